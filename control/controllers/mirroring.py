"""EndpointSlice mirroring: Endpoints written by hand (or by the API server, like the
`kubernetes` Service's) for a Service *without* a selector are mirrored into EndpointSlices,
as Kubernetes' endpointslicemirroring controller does, so slice consumers (the proxy, DNS)
see them too.

Each subset becomes a slice (subsets with equal ports share one): `addresses` as ready
endpoints, `notReadyAddresses` as not ready; IPv6 addresses are skipped (IPv4 slices only).
Slices carry managed-by `endpointslicemirroring-controller.k8s.io` and the Service as owner.
Endpoints labelled `endpointslice.kubernetes.io/skip-mirror: "true"` are not mirrored.
"""

from __future__ import annotations

from typing import Any

from control.clientbase import Client, Obj
from control.clock import Clock
from control.controllers.base import Controller
from control.controllers.endpoints import _ip_key, service_labels
from control.controllers.endpointslice import (
    MANAGED_BY_LABEL,
    MAX_ENDPOINTS,
    SERVICE_NAME_LABEL,
    SliceWriter,
    slices_of,
)
from control.controllers.util import meta
from control.informer import Informer, object_key

__all__ = ["MIRROR_MANAGER", "SKIP_MIRROR_LABEL", "EndpointSliceMirroringController",
           "mirrored"]

MIRROR_MANAGER = "endpointslicemirroring-controller.k8s.io"
SKIP_MIRROR_LABEL = "endpointslice.kubernetes.io/skip-mirror"


def _address(addr: Obj, ready: bool) -> dict[str, Any]:
    ep: dict[str, Any] = {"addresses": [addr["ip"]],
                          "conditions": {"ready": ready, "serving": ready,
                                         "terminating": False}}
    for field in ("hostname", "nodeName", "targetRef"):
        if addr.get(field):
            ep[field] = addr[field]
    return ep


def mirrored(endpoints: Obj) -> list[tuple[list[Obj], list[Obj]]]:
    """(ports, endpoints) per slice for the subsets of an Endpoints object."""
    groups: dict[str, tuple[list[Obj], list[Obj]]] = {}
    for subset in endpoints.get("subsets") or []:
        ports = [{k: p[k] for k in ("name", "port", "protocol", "appProtocol") if p.get(k)}
                 for p in subset.get("ports") or []]
        for p in ports:
            p.setdefault("name", "")        # never absent: kubectl describe dereferences it
            p.setdefault("protocol", "TCP")
        key = repr(sorted(sorted(p.items()) for p in ports))
        eps = groups.setdefault(key, (ports, []))[1]
        for field, ready in (("addresses", True), ("notReadyAddresses", False)):
            eps.extend(_address(a, ready) for a in subset.get(field) or []
                       if a.get("ip") and ":" not in a["ip"])
    out: list[tuple[list[Obj], list[Obj]]] = []
    for ports, eps in groups.values():
        eps.sort(key=lambda e: _ip_key(e["addresses"][0]))
        for i in range(0, max(len(eps), 1), MAX_ENDPOINTS):
            out.append((ports, eps[i:i + MAX_ENDPOINTS]))
    return out


class EndpointSliceMirroringController(Controller):
    name = "endpointslicemirroring"

    def __init__(self, client: Client, *, clock: Clock, services: Informer,
                 endpoints: Informer, slices: Informer, workers: int = 1) -> None:
        super().__init__(client, clock=clock, workers=workers)
        self.services, self.endpoints, self.slices = services, endpoints, slices
        self.writer = SliceWriter(client)
        for inf in (services, endpoints):
            inf.add_handler(on_add=self._changed, on_delete=self._changed,
                            on_update=lambda old, new: self._changed(new))
        slices.add_handler(on_delete=self._slice_changed,
                           on_update=lambda old, new: self._slice_changed(new))

    def _changed(self, obj: Obj) -> None:
        self.enqueue(object_key(obj))

    def _slice_changed(self, s: Obj) -> None:
        labels = meta(s).get("labels") or {}
        if labels.get(MANAGED_BY_LABEL) == MIRROR_MANAGER and labels.get(SERVICE_NAME_LABEL):
            self.enqueue(f"{meta(s).get('namespace')}/{labels[SERVICE_NAME_LABEL]}")

    async def reconcile(self, key: str) -> None:
        ns, _, name = key.partition("/")
        svc, ep = self.services.get(key), self.endpoints.get(key)
        existing = slices_of(self.slices, ns, name, MIRROR_MANAGER)
        skip = (meta(ep or {}).get("labels") or {}).get(SKIP_MIRROR_LABEL) == "true"
        if svc is None or ep is None or skip or (svc.get("spec") or {}).get("selector"):
            await self.writer.delete_all(existing)
            return
        labels = {**service_labels(svc), SERVICE_NAME_LABEL: name,
                  MANAGED_BY_LABEL: MIRROR_MANAGER}
        await self.writer.apply(svc, labels, mirrored(ep), existing)
