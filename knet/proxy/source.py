"""Where the proxy's configuration comes from: the shared `knet.servicesource` adapter.

`ProxySource` is `knet.servicesource.ServiceSource` under the name the proxy's agent uses: it
subscribes the proxier (both handler seams) to a Services and an EndpointSlices informer, and
can reuse the agent's own Services informer (which it then never starts or stops).
"""

from __future__ import annotations

from knet.servicesource import (
    InformerFactory,
    InformerLike,
    ServiceSource,
    SourceHandlers,
    default_informer_factory,
)

__all__ = ["InformerFactory", "InformerLike", "ProxyHandlers", "ProxySource"]

ProxySource = ServiceSource
ProxyHandlers = SourceHandlers
_informer_class = default_informer_factory  # the agent's name for the default factory
