"""One list+watch per resource for a whole process, shared by every consumer in it, as
client-go's SharedInformerFactory does. The node proxy's consumers (Services, the mesh's
routes and security, the pod index of flow records, the NetworkPolicy enforcer) each ask for
the informers they need; four of them want every pod of the cluster, three every namespace.
Without sharing that is four cluster-wide pod watches per node.

`SharedInformers` is an `InformerFactory` (knet/servicesource.py): calling it gives each
consumer its own handle on the one informer of that (client, resource). A handle passes
`add_handler`/`start`/`wait_synced` through; its `stop()` detaches its own handlers at once
(a stopped consumer gets no more events) and stops the informer when the last started
handle stops. Handlers added after the informer synced are replayed the cache first
(`control.informer.Informer.add_handler`), so a late consumer sees what an early one saw.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from control.clientbase import Client, Obj
from knet.servicesource import InformerFactory, InformerLike, default_informer_factory

__all__ = ["SharedInformers"]

_METHODS = ("on_add", "on_update", "on_delete", "on_synced")


class _Gate:
    """One consumer's handler on a shared informer; `closed` drops its events from then on."""

    def __init__(self, target: Any, fns: dict[str, Callable[..., Any] | None]) -> None:
        self.closed = False
        self.synced = asyncio.Event()   # this handler has had the cache (its replay, if late)
        for name in _METHODS:
            fn = getattr(target, name, None) if target is not None else fns.get(name)
            if fn is not None:
                setattr(self, name, self._gated(fn))
        self._then_synced = getattr(self, "on_synced", None)
        self.on_synced = self._synced

    def _gated(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            return None if self.closed else fn(*args)
        return call

    def _synced(self) -> Any:
        self.synced.set()
        return self._then_synced() if self._then_synced is not None else None


class _Entry:
    def __init__(self, informer: InformerLike) -> None:
        self.informer = informer
        self.started: set[_Handle] = set()


class _Handle:
    """A consumer's view of a shared informer (the InformerLike it was given)."""

    def __init__(self, entry: _Entry, resource: str) -> None:
        self._entry, self.resource = entry, resource
        self._gates: list[_Gate] = []

    def __repr__(self) -> str:
        return f"<shared informer {self.resource}, {len(self._entry.started)} started handle(s)>"

    def add_handler(self, handler: Any = None, *, on_add: Callable[[Obj], Any] | None = None,
                    on_update: Callable[[Obj, Obj], Any] | None = None,
                    on_delete: Callable[[Obj], Any] | None = None,
                    on_synced: Callable[[], Any] | None = None) -> None:
        gate = _Gate(handler, {"on_add": on_add, "on_update": on_update,
                               "on_delete": on_delete, "on_synced": on_synced})
        self._gates.append(gate)
        self._entry.informer.add_handler(gate)

    def start(self) -> None:
        self._entry.started.add(self)
        self._entry.informer.start()      # idempotent: one task per informer

    async def stop(self) -> None:
        for gate in self._gates:
            gate.closed = True
        if self in self._entry.started:
            self._entry.started.discard(self)
            if not self._entry.started:
                await self._entry.informer.stop()

    async def wait_synced(self, timeout: float = 30.0) -> None:
        """Until the informer has synced and this handle's handlers have seen its cache (a
        handler added late is replayed from a task of its own: wait for that too)."""
        await self._entry.informer.wait_synced(timeout)
        try:
            await asyncio.wait_for(asyncio.gather(*(g.synced.wait() for g in self._gates)),
                                   timeout)
        except TimeoutError:
            raise TimeoutError(f"shared informer {self.resource}: handlers not replayed after "
                               f"{timeout}s") from None

    def __getattr__(self, name: str) -> Any:   # get, list, keys, synced: the shared cache
        return getattr(self._entry.informer, name)


class SharedInformers:
    """An InformerFactory whose informers are shared per (client, resource)."""

    def __init__(self, make: InformerFactory | None = None) -> None:
        self._make = make or default_informer_factory()
        self._entries: dict[tuple[int, str], _Entry] = {}

    def __repr__(self) -> str:
        return f"<SharedInformers {sorted(r for _, r in self._entries)}>"

    def __call__(self, client: Client, resource: str) -> InformerLike:
        key = (id(client), resource)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(self._make(client, resource))
        return _Handle(entry, resource)

    def resources(self) -> list[str]:
        """The resources watched (one informer each), for tests and `repr`."""
        return sorted(r for _, r in self._entries)
