"""Feeds the DNS record table from the API server: two informers (Services, EndpointSlices)
whose on_add/on_update/on_delete/on_synced events are routed to the kube-proxy-style handler
methods (`on_service_add`, ..., `on_endpointslice_synced`).

The informer class is passed in (default: `control.informer.Informer`, imported lazily), so
the adapter is tested with a fake informer and no API server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class ServiceHandler(Protocol):
    def on_service_add(self, svc: Obj) -> None: ...
    def on_service_update(self, old: Obj, new: Obj) -> None: ...
    def on_service_delete(self, svc: Obj) -> None: ...
    def on_service_synced(self) -> None: ...


class EndpointSliceHandler(Protocol):
    def on_endpointslice_add(self, obj: Obj) -> None: ...
    def on_endpointslice_update(self, old: Obj, new: Obj) -> None: ...
    def on_endpointslice_delete(self, obj: Obj) -> None: ...
    def on_endpointslice_synced(self) -> None: ...


class Handlers(ServiceHandler, EndpointSliceHandler, Protocol):
    pass


class InformerLike(Protocol):
    """What `control.informer.Informer` offers and this adapter uses."""
    def add_handler(self, handler: Any) -> None: ...
    def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def wait_synced(self, timeout: float) -> None: ...


InformerFactory = Callable[..., InformerLike]


class _Route:
    """Informer handler -> one family of handler methods (`on_<kind>_add`, ...)."""

    def __init__(self, target: Handlers, kind: str) -> None:
        self._add = getattr(target, f"on_{kind}_add")
        self._update = getattr(target, f"on_{kind}_update")
        self._delete = getattr(target, f"on_{kind}_delete")
        self._synced = getattr(target, f"on_{kind}_synced")

    def on_add(self, obj: Obj) -> None:
        self._add(obj)

    def on_update(self, old: Obj, new: Obj) -> None:
        self._update(old, new)

    def on_delete(self, obj: Obj) -> None:
        self._delete(obj)

    def on_synced(self) -> None:
        self._synced()


def _default_informer() -> InformerFactory:
    from control.informer import Informer
    return Informer


class ClusterSource:
    """Watches Services and EndpointSlices in every namespace and drives `handlers`."""

    def __init__(self, client: object, handlers: Handlers, *,
                 informer: InformerFactory | None = None) -> None:
        factory = informer or _default_informer()
        self.services = factory(client, "services")
        self.endpointslices = factory(client, "endpointslices")
        self.services.add_handler(_Route(handlers, "service"))
        self.endpointslices.add_handler(_Route(handlers, "endpointslice"))

    def start(self) -> None:
        """Starts both informers (each owns one task; `stop()` ends them)."""
        self.services.start()
        self.endpointslices.start()

    async def wait_synced(self, timeout: float) -> None:
        """Returns once both informers have delivered their first list; TimeoutError (naming
        the resource) after `timeout` seconds."""
        await asyncio.gather(self.services.wait_synced(timeout),
                             self.endpointslices.wait_synced(timeout))

    async def stop(self) -> None:
        await asyncio.gather(self.services.stop(), self.endpointslices.stop(),
                             return_exceptions=True)
