"""Where the proxy's configuration comes from: two informers (Services, EndpointSlices).

`ProxySource` subscribes the kube-proxy-style handlers (config.py) to a Services informer and
an EndpointSlices informer on a `control.clientbase.Client`. The informer class is passed in
(default `control.informer.Informer`, imported lazily), so the adapter is tested with a fake
informer; an informer the caller already runs (the agent's Services) can be passed instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from control.clientbase import Client
from knet.proxy.config import EndpointSliceHandler, ServiceHandler

log = logging.getLogger(__name__)

__all__ = ["InformerLike", "ProxyHandlers", "ProxySource"]


class ProxyHandlers(ServiceHandler, EndpointSliceHandler, Protocol):
    pass


class InformerLike(Protocol):
    """The part of `control.informer.Informer` the proxy uses."""
    def add_handler(self, handler: Any = None, *, on_add: Callable[..., Any] | None = None,
                    on_update: Callable[..., Any] | None = None,
                    on_delete: Callable[..., Any] | None = None,
                    on_synced: Callable[..., Any] | None = None) -> None: ...
    def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def wait_synced(self, timeout: float = 30.0) -> None: ...


InformerFactory = Callable[[Client, str], InformerLike]


def _informer_class() -> InformerFactory:
    from control.informer import Informer
    return Informer


class ProxySource:
    """Feeds `handlers` from Services and EndpointSlices in every namespace."""

    def __init__(self, client: Client, handlers: ProxyHandlers, *,
                 informer: InformerFactory | None = None,
                 services: InformerLike | None = None) -> None:
        factory = informer or _informer_class()
        self._own_services = services is None
        self.services = services if services is not None else factory(client, "services")
        self.endpointslices = factory(client, "endpointslices")
        h = handlers
        self.services.add_handler(on_add=h.on_service_add, on_update=h.on_service_update,
                                  on_delete=h.on_service_delete, on_synced=h.on_service_synced)
        self.endpointslices.add_handler(
            on_add=h.on_endpointslice_add, on_update=h.on_endpointslice_update,
            on_delete=h.on_endpointslice_delete, on_synced=h.on_endpointslice_synced)

    def start(self) -> None:
        if self._own_services:
            self.services.start()
        self.endpointslices.start()

    async def wait_synced(self, timeout: float = 30.0) -> None:
        await asyncio.gather(self.services.wait_synced(timeout),
                             self.endpointslices.wait_synced(timeout))

    async def stop(self) -> None:
        """Stops the informers this source started (not a shared Services informer)."""
        await self.endpointslices.stop()
        if self._own_services:
            await self.services.stop()
