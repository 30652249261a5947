"""Services and EndpointSlices from the API server, for every consumer of them (the node
proxy, cluster DNS): the kube-proxy-style handler seams and the adapter that feeds them.

`ServiceSource` subscribes one object implementing both `ServiceHandler` and
`EndpointSliceHandler` to two informers (services, endpointslices, every namespace) on a
`control.clientbase.Client`. Key design choice: the informer class is passed in (default
`control.informer.Informer`, imported lazily), so the adapter is tested without an API
server, and a Services informer the caller already runs can be reused; the source never
starts or stops an informer it does not own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from control.clientbase import Client, Obj

log = logging.getLogger(__name__)

__all__ = [
    "Companion",
    "EndpointSliceHandler",
    "InformerFactory",
    "InformerLike",
    "ServiceHandler",
    "ServiceSource",
    "SourceHandlers",
    "default_informer_factory",
]


class ServiceHandler(Protocol):
    """Told about core/v1 Services (wire-form dicts); `on_service_synced` once listed."""
    def on_service_add(self, service: Obj, /) -> None: ...
    def on_service_update(self, old: Obj, new: Obj, /) -> None: ...
    def on_service_delete(self, service: Obj, /) -> None: ...
    def on_service_synced(self) -> None: ...


class EndpointSliceHandler(Protocol):
    """Told about discovery.k8s.io/v1 EndpointSlices; `on_endpointslice_synced` once listed."""
    def on_endpointslice_add(self, slice_: Obj, /) -> None: ...
    def on_endpointslice_update(self, old: Obj, new: Obj, /) -> None: ...
    def on_endpointslice_delete(self, slice_: Obj, /) -> None: ...
    def on_endpointslice_synced(self) -> None: ...


class SourceHandlers(ServiceHandler, EndpointSliceHandler, Protocol):
    """Both seams in one object, what `ServiceSource` drives."""


class InformerLike(Protocol):
    """The part of `control.informer.Informer` the consumers of this module use."""
    def add_handler(self, handler: Any = None, *, on_add: Callable[..., Any] | None = None,
                    on_update: Callable[..., Any] | None = None,
                    on_delete: Callable[..., Any] | None = None,
                    on_synced: Callable[..., Any] | None = None) -> None: ...
    def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def wait_synced(self, timeout: float = 30.0) -> None: ...


InformerFactory = Callable[[Client, str], InformerLike]


class Companion(Protocol):
    """Another watch-fed part started and stopped with the source (the mesh's sources)."""
    def start(self) -> None: ...
    async def wait_synced(self, timeout: float = 30.0) -> None: ...
    async def stop(self) -> None: ...


def default_informer_factory() -> InformerFactory:
    """`control.informer.Informer`, imported only when no factory is given."""
    from control.informer import Informer
    return Informer


class ServiceSource:
    """Feeds `handlers` from Services and EndpointSlices in every namespace.

    `services`, if given, is a Services informer owned (started, stopped) by the caller; the
    handlers are added to it, and this source starts and stops only what it made."""

    def __init__(self, client: Client, handlers: SourceHandlers, *,
                 informer: InformerFactory | None = None,
                 services: InformerLike | None = None) -> None:
        factory = informer or default_informer_factory()
        self._own_services = services is None
        self.companions: list[Companion] = []
        self.services = services if services is not None else factory(client, "services")
        self.endpointslices = factory(client, "endpointslices")
        h = handlers
        self.services.add_handler(on_add=h.on_service_add, on_update=h.on_service_update,
                                  on_delete=h.on_service_delete, on_synced=h.on_service_synced)
        self.endpointslices.add_handler(
            on_add=h.on_endpointslice_add, on_update=h.on_endpointslice_update,
            on_delete=h.on_endpointslice_delete, on_synced=h.on_endpointslice_synced)

    def __repr__(self) -> str:
        owner = "own" if self._own_services else "shared"
        return f"<ServiceSource services={owner}>"

    def add_companion(self, companion: Companion) -> None:
        """Start, wait for and stop `companion` with this source (add before `start()`)."""
        self.companions.append(companion)

    def _owned(self) -> list[InformerLike]:
        own = [self.services] if self._own_services else []
        return [*own, self.endpointslices]

    def start(self) -> None:
        """Starts the informers this source made (each owns one task; `stop()` ends them)."""
        for inf in self._owned():
            inf.start()
        for c in self.companions:
            c.start()

    async def wait_synced(self, timeout: float = 30.0) -> None:
        """Returns once both informers have delivered their first list; TimeoutError (naming
        the resource) after `timeout` seconds."""
        await asyncio.gather(self.services.wait_synced(timeout),
                             self.endpointslices.wait_synced(timeout),
                             *(c.wait_synced(timeout) for c in self.companions))

    async def stop(self) -> None:
        """Stops the informers this source made (never a shared Services informer); one
        failing to stop does not keep the other running."""
        owned: list[InformerLike | Companion] = [*self._owned(), *self.companions]
        results = await asyncio.gather(*(inf.stop() for inf in owned), return_exceptions=True)
        for inf, res in zip(owned, results, strict=True):
            if isinstance(res, BaseException):
                log.error("service source: stopping informer %r failed: %s", inf, res)
