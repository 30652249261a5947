"""The LoadBalancer controller: what a cloud-controller-manager (or MetalLB's controller plus
its layer-2 speakers) does for `type: LoadBalancer` Services in a knet cluster.

Each such Service (without a `loadBalancerClass`: that one is another implementation's) gets
an address from the pool (`knet up --lb-pool`, default 172.18.255.0/24 inside the underlay)
in `status.loadBalancer.ingress`, honouring `spec.loadBalancerIP` or MetalLB's
`metallb.universe.tf/loadBalancerIPs` annotation; the address goes back to the pool when the
Service is deleted or stops being a LoadBalancer. A refused request (taken, outside the pool,
pool exhausted) leaves the Service pending with a Warning Event in MetalLB's words.

The announcement is decided here too, as MetalLB's speakers decide it: one node answers for
the address (Ready nodes; with `externalTrafficPolicy: Local` only nodes with a ready local
endpoint), named in the annotation `lb.knet.dev/announced-by` and in a `nodeAssigned` Event.
That node's kube-proxy routes the address to itself on the host side (knet/proxy/external.py).
The pool is rebuilt from the Services' statuses at start, so the store stays the only truth.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from control.clientbase import Client, Obj
from control.clock import Clock
from control.controllers.base import Controller
from control.controllers.events import EventRecorder
from control.controllers.lbpool import (
    DEFAULT_POOL,
    REQUEST_ANNOTATION,
    AddressPool,
    PoolError,
    announcer,
)
from control.errors import NotFound
from control.informer import Informer, object_key

__all__ = ["ANNOUNCE_ANNOTATION", "LoadBalancerController", "wants_address"]

ANNOUNCE_ANNOTATION = "lb.knet.dev/announced-by"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def wants_address(svc: Obj | None) -> bool:
    """A LoadBalancer Service this controller serves (no other loadBalancerClass)."""
    spec = (svc or {}).get("spec") or {}
    return spec.get("type") == "LoadBalancer" and not spec.get("loadBalancerClass")


def _requested(svc: Obj) -> str | None:
    spec = svc.get("spec") or {}
    if spec.get("loadBalancerIP"):
        return str(spec["loadBalancerIP"]).strip()
    ann = ((svc.get("metadata") or {}).get("annotations") or {}).get(REQUEST_ANNOTATION)
    first = str(ann or "").split(",")[0].strip()
    return first or None


def _ingress_ips(svc: Obj) -> list[str]:
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [str(i["ip"]) for i in ingress if isinstance(i, dict) and i.get("ip")]


def _ready(node: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


def _created(svc: Obj) -> str:
    return str((svc.get("metadata") or {}).get("creationTimestamp") or "")


class LoadBalancerController(Controller):
    """Keys: Services' "ns/name"."""
    name = "loadbalancer"

    def __init__(self, client: Client, *, clock: Clock, recorder: EventRecorder,
                 services: Informer, nodes: Informer, slices: Informer,
                 pool: str = DEFAULT_POOL) -> None:
        super().__init__(client, clock=clock, workers=1)
        self.recorder = recorder
        self.services, self.nodes, self.slices = services, nodes, slices
        self.pool = AddressPool(pool)
        services.add_handler(on_add=self._on_service, on_update=lambda _o, n: self._on_service(n),
                             on_delete=self._on_service)
        nodes.add_handler(on_add=self._all, on_update=self._node_changed,
                          on_delete=self._all)
        slices.add_handler(on_add=self._on_slice, on_update=lambda _o, n: self._on_slice(n),
                           on_delete=self._on_slice)

    def __repr__(self) -> str:
        return f"<LoadBalancerController {self.pool!r}>"

    # ---- handlers ----------------------------------------------------------------------
    def _on_service(self, svc: Obj) -> None:
        self.enqueue(object_key(svc))

    def _on_slice(self, sl: Obj) -> None:
        meta = sl.get("metadata") or {}
        name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if name:
            self.enqueue(f"{meta.get('namespace') or 'default'}/{name}")

    def _all(self, _obj: Obj | None = None) -> None:
        for svc in self.services.list():
            if wants_address(svc):
                self.enqueue(object_key(svc))

    def _node_changed(self, old: Obj, new: Obj) -> None:
        if _ready(old) != _ready(new):
            self._all()

    async def run(self, stop: asyncio.Event) -> None:
        self._seed(self.services.list())
        await super().run(stop)

    def _seed(self, services: Iterable[Obj]) -> None:
        """The addresses the stored Services hold (oldest first keeps a contested one)."""
        for svc in sorted(services, key=lambda s: (_created(s), object_key(s))):
            if wants_address(svc):
                for ip in _ingress_ips(svc)[:1]:
                    self.pool.mark(object_key(svc), ip)

    # ---- reconcile ---------------------------------------------------------------------
    async def reconcile(self, key: str) -> None:
        svc = self.services.get(key)
        if not wants_address(svc):
            if self.pool.release(key) is not None:
                self._all()                        # a pending Service may get it now
            if svc is not None and self._ours(svc) and _ingress_ips(svc):
                await self._status(svc, [])
            if svc is not None:
                await self._announce(svc, None)
            return
        assert svc is not None
        try:
            ip = self.pool.assign(key, _requested(svc))
        except PoolError as exc:
            await self.recorder.record(svc, "Warning", "AllocationFailed",
                                       f'Failed to allocate IP for "{key}": {exc}')
            if _ingress_ips(svc):
                await self._status(svc, [])
            await self._announce(svc, None)
            return
        if _ingress_ips(svc) != [ip]:
            await self._status(svc, [ip])
            await self.recorder.record(svc, "Normal", "IPAllocated", f'Assigned IP ["{ip}"]')
        await self._announce(svc, announcer(ip, self._candidates(svc)))

    def _ours(self, svc: Obj) -> bool:
        """The status was written by this controller (not another loadBalancerClass's)."""
        return not (svc.get("spec") or {}).get("loadBalancerClass")

    def _candidates(self, svc: Obj) -> list[str]:
        ready = {str((n.get("metadata") or {}).get("name")) for n in self.nodes.list()
                 if _ready(n)}
        if (svc.get("spec") or {}).get("externalTrafficPolicy") != "Local":
            return sorted(ready)
        meta = svc.get("metadata") or {}
        local: set[str] = set()
        for sl in self.slices.list(namespace=meta.get("namespace")):
            if ((sl.get("metadata") or {}).get("labels") or {}).get(
                    SERVICE_NAME_LABEL) != meta.get("name"):
                continue
            for ep in sl.get("endpoints") or []:
                if (ep.get("conditions") or {}).get("ready") is not False and ep.get("nodeName"):
                    local.add(str(ep["nodeName"]))
        return sorted(ready & local)

    async def _status(self, svc: Obj, ips: list[str]) -> None:
        meta = svc["metadata"]
        body = {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"} for ip in ips]}
                if ips else {}}
        try:
            await self.client.patch("services", meta["name"], {"status": body},
                                    namespace=meta.get("namespace"), subresource="status")
        except NotFound:
            return

    async def _announce(self, svc: Obj, node: str | None) -> None:
        meta = svc["metadata"]
        have = (meta.get("annotations") or {}).get(ANNOUNCE_ANNOTATION)
        if have == node:
            return
        try:
            await self.client.patch("services", meta["name"], {"metadata": {"annotations": {
                ANNOUNCE_ANNOTATION: node}}}, namespace=meta.get("namespace"))
        except NotFound:
            return
        if node is not None:
            await self.recorder.record(svc, "Normal", "nodeAssigned",
                                       f'announcing from node "{node}" with protocol "layer2"')
