"""Feeds the DNS record table from the API server through the shared `knet.servicesource`
adapter: Services and EndpointSlices informers drive `ClusterRecords`' kube-proxy-style
handler methods (`on_service_add`, ..., `on_endpointslice_synced`).

`ClusterSource` is `knet.servicesource.ServiceSource` under the name the DNS server uses.
"""

from __future__ import annotations

from knet.servicesource import (
    EndpointSliceHandler,
    InformerFactory,
    InformerLike,
    ServiceHandler,
    ServiceSource,
    SourceHandlers,
)

__all__ = ["ClusterSource", "EndpointSliceHandler", "Handlers", "InformerFactory",
           "InformerLike", "ServiceHandler"]

ClusterSource = ServiceSource
Handlers = SourceHandlers
