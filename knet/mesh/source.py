"""The node proxy's mesh inputs, watched: HTTPRoutes, VirtualServices, DestinationRules,
ReferenceGrants, Namespaces (labels) and Pods (labels), kept parsed, and the route table
rebuilt from them and the proxier's Service table, then swapped into `MeshState` in one
assignment (listeners read `state.table` per request, so a request sees one table).

Key design choice: rebuilding is level-triggered and coalesced. A change marks the source
dirty; a loop every `period` (0.25 s) rebuilds when something is dirty or the proxier's
Service table object changed, so a change is live within a second and a burst of changes
costs one rebuild. Objects are parsed once, on their watch event, not on every rebuild.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any, Protocol

from pydantic import ValidationError

from control.clientbase import Client, Obj
from control.models.meshgateway import HTTPRoute, ReferenceGrant
from control.models.meshistio import DestinationRule, VirtualService
from control.models.meta import TopLevel
from knet.mesh.lb import MeshBalancer
from knet.mesh.northsouth import NorthSouthListeners, add_north_south
from knet.mesh.status import publish_status
from knet.mesh.table import compile_table
from knet.mesh.types import RouteTable
from knet.mesh.watched import WatchedSource
from knet.mesh.world import World
from knet.proxy.balancer import Clock, SystemClock
from knet.proxy.config import ServicePort, ServiceTable
from knet.proxy.tcp import ProxyContext
from knet.servicesource import InformerFactory

log = logging.getLogger(__name__)

__all__ = ["MESH_RESOURCES", "MeshSource", "MeshState", "attach_mesh", "relisten", "wants_l7"]

MESH_RESOURCES: dict[str, type[TopLevel] | None] = {
    "httproutes": HTTPRoute, "virtualservices": VirtualService,
    "destinationrules": DestinationRule, "referencegrants": ReferenceGrant,
    "namespaces": None, "pods": None, "gateways": None, "ingresses": None}
_RAW = frozenset({"gateways", "ingresses"})  # kept as wire dicts (knet/mesh/northsouth.py)


class MeshState:
    """What every L7 listener of a proxier shares: the current table, the mesh balancer
    (endpoint choice, outlier and pool state), the random source of weights and faults."""

    def __init__(self, *, clock: Clock | None = None,
                 rng: Callable[[], float] | None = None) -> None:
        self.rng = rng or random.random
        self.table = RouteTable({}, {})
        self.lb = MeshBalancer(clock=clock or SystemClock(), rng=self.rng)
        self.rebuilt_at = 0.0
        self.refresh: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return f"<MeshState {len(self.table.ports)} meshed ports {self.lb!r}>"

    def current(self) -> RouteTable:
        """The table for the next request: rebuilt first if the proxier's Service table
        changed since (so a meshed request never uses older endpoints than an L4 one)."""
        if self.refresh is not None:
            self.refresh()
        return self.table


class ServiceTableOwner(Protocol):
    """The proxier: its current Service table (an immutable mapping, replaced on change)."""
    @property
    def table(self) -> ServiceTable: ...


class _HasContext(ServiceTableOwner, Protocol):
    @property
    def ctx(self) -> ProxyContext: ...


class Relistener(Protocol):
    """The proxier's side of enrollment: its listeners by (protocol, ip, port), and the
    handler call that makes it reconcile them again (reopening what is missing)."""
    listeners: dict[tuple[str, str, int], Any]

    def on_service_synced(self) -> None: ...


def wants_l7(state: MeshState, sp: ServicePort) -> bool:
    """Does this port go through the L7 path: appProtocol http, or meshed by the table."""
    return sp.is_http or sp.key in state.table.ports


async def relisten(proxier: Relistener, state: MeshState) -> int:
    """Enrollment changed a port's path (L4 <-> L7): close its listeners so the proxier
    reopens them as the right kind. Returns how many were closed."""
    from knet.proxy.http import HttpListener  # the proxy's kinds; a cycle at import time

    stale = [(lk, ln) for lk, ln in proxier.listeners.items() if lk[0] == "TCP"
             and isinstance(ln, HttpListener) != wants_l7(state, ln.sp)]
    for lk, _ in stale:
        del proxier.listeners[lk]
    for lk, ln in stale:
        log.info("mesh: %s %s:%d now goes through the %s path", ln.sp.key, lk[1], lk[2],
                 "L7" if wants_l7(state, ln.sp) else "L4")
        await ln.close()
    refusals = getattr(proxier, "refusals", None)  # ports refused for lack of endpoints
    routed = refusals is not None and any(r.sp.key in state.table.ports
                                          for r in refusals.refused.values())
    if stale or routed:  # a routed port is served whatever its own endpoints (proxier.py)
        proxier.on_service_synced()  # a public nudge: reconcile listeners again
    return len(stale)


class _Proxier(_HasContext, Relistener, Protocol):
    """What the mesh needs of knet.proxy.proxier.Proxier."""


def attach_mesh(client: Client, proxier: _Proxier,
                informer: InformerFactory | None = None) -> MeshSource:
    """The node proxy's hook: a MeshState for the proxier's L7 listeners and the source
    that keeps it current (start/stop it with the ServiceSource: `add_companion`)."""
    state = MeshState()
    proxier.ctx.mesh = state
    northsouth = NorthSouthListeners(proxier.ctx, getattr(proxier, "node_ips", ()),
                                     timeout=getattr(proxier, "http_timeout", 15.0),
                                     retries=getattr(proxier, "http_retries", 2))
    return MeshSource(client, proxier, state, informer=informer, relistener=proxier,
                      northsouth=northsouth)


def _key(obj: Obj) -> str:
    md = obj.get("metadata") or {}
    return f"{md.get('namespace') or ''}/{md.get('name') or ''}"


class MeshSource(WatchedSource):
    what = "mesh: rebuilding the route table"

    def __init__(self, client: Client, owner: ServiceTableOwner, state: MeshState, *,
                 informer: InformerFactory | None = None, period: float = 0.25,
                 relistener: Relistener | None = None,
                 northsouth: NorthSouthListeners | None = None) -> None:
        self.northsouth = northsouth
        self.owner, self.state = owner, state
        self.relistener = relistener
        self.client, self.write_status = client, True
        state.refresh = self.refresh_if_stale
        self._built_from: ServiceTable | None = None
        self._written: RouteTable | None = None
        super().__init__(client, MESH_RESOURCES, informer=informer, period=period)

    def __repr__(self) -> str:
        return f"<MeshSource {sum(len(v) for v in self.objects.values())} objects>"

    def _put(self, resource: str) -> Callable[[Obj], None]:
        model = MESH_RESOURCES[resource]

        def on_add(obj: Obj) -> None:
            key = _key(obj)
            if resource in _RAW:
                self.objects[resource][key] = obj
            elif model is None:
                labels = (obj.get("metadata") or {}).get("labels") or {}
                self.objects[resource][key if resource == "pods" else key.strip("/")] = labels
            else:
                try:
                    self.objects[resource][key] = model.model_validate(obj)
                except ValidationError as exc:  # admission checks them; an old object may not
                    log.warning("mesh: %s %s ignored: %s", resource, key, exc.errors()[0]["msg"])
                    self.objects[resource].pop(key, None)
            self._dirty = True
        return on_add

    def _drop(self, resource: str) -> Callable[[Obj], None]:
        def on_delete(obj: Obj) -> None:
            key = _key(obj)
            self.objects[resource].pop(key if resource == "pods" or resource in _RAW
                                       or MESH_RESOURCES[resource] else key.strip("/"), None)
            self._dirty = True
        return on_delete

    def refresh_if_stale(self) -> None:
        if self.owner.table is not self._built_from:
            try:
                self.rebuild()
            except Exception:  # keep serving with the old table
                log.exception("mesh: rebuilding the route table failed; the old one stays")
                self._built_from = self.owner.table

    def rebuild(self) -> RouteTable:
        services = self.owner.table
        o = self.objects
        table = compile_table(services, httproutes=o["httproutes"].values(),
                              virtualservices=o["virtualservices"].values(),
                              destinationrules=o["destinationrules"].values(),
                              referencegrants=o["referencegrants"].values(),
                              pod_labels=o["pods"], namespace_labels=o["namespaces"])
        table = add_north_south(table, World(services, o["pods"], o["namespaces"], list(
            o["destinationrules"].values()), list(o["referencegrants"].values())),
            httproutes=o["httproutes"].values(), gateways=o["gateways"],
            ingresses=o["ingresses"].values(), namespace_labels=o["namespaces"])
        self.state.table, self.state.rebuilt_at = table, time.monotonic()
        self._built_from, self._dirty = services, False
        return table

    async def tick(self) -> None:
        if self._dirty or self.owner.table is not self._built_from:
            self.rebuild()
        table = self.state.table  # may also be rebuilt by a request (current())
        if self.relistener is not None:  # cheap: a pass over the listeners
            await relisten(self.relistener, self.state)
        if self.northsouth is not None:
            await self.northsouth.reconcile(table)
        if self.write_status and table is not self._written:
            await publish_status(self.client, table.status, self.objects)
            self._written = table

    def failed(self) -> None:
        self._dirty = False       # the same objects would fail again: wait for a change

    async def stop(self) -> None:
        await self.stop_watching()
        if self.northsouth is not None:
            await self.northsouth.close()
