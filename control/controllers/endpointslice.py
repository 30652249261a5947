"""EndpointSlice: for each Service with a selector, discovery.k8s.io/v1 EndpointSlices.

One slice per distinct port set (pods resolving a named targetPort differently get their own
slice), at most 100 endpoints each. Every selected pod with an IP is an endpoint with the
upstream conditions: serving = the pod is Ready, terminating = it has a deletionTimestamp,
ready = publishNotReadyAddresses or (serving and not terminating); terminating pods stay, as
in Kubernetes 1.26+. Slices carry `kubernetes.io/service-name`,
`endpointslice.kubernetes.io/managed-by` and a controller ownerReference to the Service.
Existing slices owned by the Service (by uid: a re-created Service of the same name does
not inherit its predecessor's) are matched by port set and only rewritten when their
content differs; the others are deleted.
"""

from __future__ import annotations

from typing import Any

from control.clientbase import Client, Obj
from control.clock import Clock
from control.controllers.base import Controller
from control.controllers.endpoints import (
    PortTuple,
    ServicePods,
    _ip_key,
    address_of,
    resolve_ports,
    service_labels,
)
from control.controllers.util import deep, is_pod_ready, is_terminating, meta, owner_ref
from control.errors import NotFound
from control.informer import Informer

__all__ = ["MANAGED_BY_LABEL", "MANAGER", "SERVICE_NAME_LABEL", "EndpointSliceController",
           "SliceWriter", "slice_port", "slices_of"]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGER = "endpointslice-controller.k8s.io"
MAX_ENDPOINTS = 100


def slice_port(p: tuple[str, int, str, str]) -> dict[str, Any]:
    """One port of a slice. `name` is always there, "" for an unnamed Service port: the
    EndpointSlice controller writes a non-nil name, and `kubectl describe svc` dereferences
    it (a slice port without a name makes kubectl panic)."""
    out: dict[str, Any] = {"name": p[0], "port": p[1], "protocol": p[2]}
    if p[3]:
        out["appProtocol"] = p[3]
    return out


class EndpointSliceController(Controller):
    name = "endpointslice"

    def __init__(self, client: Client, *, clock: Clock, services: Informer, pods: Informer,
                 slices: Informer, workers: int = 2) -> None:
        super().__init__(client, clock=clock, workers=workers)
        self.map = ServicePods(services, pods)
        self.slices = slices
        self.writer = SliceWriter(client)
        self.map.watch(self.enqueue)
        slices.add_handler(on_delete=self._slice_changed,
                           on_update=lambda old, new: self._slice_changed(new))

    def _slice_changed(self, s: Obj) -> None:
        labels = meta(s).get("labels") or {}
        if labels.get(MANAGED_BY_LABEL) == MANAGER and labels.get(SERVICE_NAME_LABEL):
            self.enqueue(f"{meta(s).get('namespace')}/{labels[SERVICE_NAME_LABEL]}")

    def owned(self, ns: str, name: str) -> list[Obj]:
        return slices_of(self.slices, ns, name, MANAGER)

    def desired(self, svc: Obj) -> list[tuple[list[Obj], list[Obj]]]:
        """(ports, endpoints) per slice the Service should have."""
        groups: dict[PortTuple, list[Obj]] = {}
        has_ports = bool((svc.get("spec") or {}).get("ports"))
        publish = bool((svc.get("spec") or {}).get("publishNotReadyAddresses"))
        for pod in self.map.pods_for(svc):
            ports = resolve_ports(svc, pod)
            if has_ports and not ports:
                continue
            groups.setdefault(ports, []).append(_endpoint(svc, pod, publish))
        out: list[tuple[list[Obj], list[Obj]]] = []
        for ports, eps in sorted(groups.items()):
            eps.sort(key=lambda e: _ip_key(e["addresses"][0]))
            for i in range(0, len(eps), MAX_ENDPOINTS):
                out.append(([slice_port(p) for p in ports], eps[i:i + MAX_ENDPOINTS]))
        if not out:
            out.append(([], []))            # an empty placeholder slice, like Kubernetes
        return out

    async def reconcile(self, key: str) -> None:
        ns, _, name = key.partition("/")
        svc = self.map.services.get(key)
        existing = self.owned(ns, name)
        if svc is None:
            await self.writer.delete_all(existing)
            return
        if not (svc.get("spec") or {}).get("selector"):
            return
        labels = {**service_labels(svc), SERVICE_NAME_LABEL: name, MANAGED_BY_LABEL: MANAGER}
        uid = meta(svc).get("uid")
        stale = [s for s in existing if not _owned_by(s, uid)]
        await self.writer.delete_all(stale)
        existing = [s for s in existing if _owned_by(s, uid)]
        await self.writer.apply(svc, labels, self.desired(svc), existing)


class SliceWriter:
    """Makes a Service's slices (of one manager) what they should be: each desired
    (ports, endpoints) reuses an existing slice with the same ports (rewritten only if it
    differs), else is created; leftover slices are deleted."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def apply(self, svc: Obj, labels: dict[str, str],
                    desired: list[tuple[list[Obj], list[Obj]]], existing: list[Obj]) -> None:
        unused = sorted(existing, key=lambda s: meta(s).get("name", ""))
        for ports, endpoints in desired:
            match = next((s for s in unused if (s.get("ports") or []) == ports), None)
            if match is None:
                await self._create(svc, labels, ports, endpoints)
                continue
            unused.remove(match)
            if ((match.get("endpoints") or []) != endpoints
                    or (meta(match).get("labels") or {}) != labels):
                body = deep(match)
                body["metadata"]["labels"] = labels
                body["endpoints"] = endpoints
                await self.client.update("endpointslices", body)
        await self.delete_all(unused)

    async def _create(self, svc: Obj, labels: dict[str, str], ports: list[Obj],
                      endpoints: list[Obj]) -> None:
        sm = meta(svc)
        body = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"generateName": f"{sm['name']}-", "namespace": sm["namespace"],
                             "labels": labels, "ownerReferences": [owner_ref(svc)]},
                "addressType": "IPv4", "endpoints": endpoints, "ports": ports}
        await self.client.create("endpointslices", body, namespace=sm["namespace"])

    async def delete_all(self, slices: list[Obj]) -> None:
        for s in slices:
            try:
                await self.client.delete("endpointslices", meta(s)["name"],
                                         namespace=meta(s)["namespace"])
            except NotFound:
                pass


def slices_of(slices: Informer, ns: str, service: str, manager: str) -> list[Obj]:
    """The cached slices of one Service written by one manager."""
    return [s for s in slices.list(namespace=ns)
            if (meta(s).get("labels") or {}).get(SERVICE_NAME_LABEL) == service
            and (meta(s).get("labels") or {}).get(MANAGED_BY_LABEL) == manager]


def _owned_by(s: Obj, uid: object) -> bool:
    """The slice's controller ownerReference names this Service object (by uid)."""
    refs = meta(s).get("ownerReferences") or []
    return not refs or any(r.get("uid") == uid and r.get("controller") for r in refs)


def _endpoint(svc: Obj, pod: Obj, publish: bool) -> dict[str, Any]:
    """Upstream's podToEndpoint: ready is never true for a terminating pod unless the
    Service publishes not-ready addresses."""
    addr = address_of(svc, pod)
    terminating = is_terminating(pod)
    serving = is_pod_ready(pod)
    ep: dict[str, Any] = {"addresses": [addr["ip"]],
                          "conditions": {"ready": publish or (serving and not terminating),
                                         "serving": serving, "terminating": terminating}}
    if "hostname" in addr:
        ep["hostname"] = addr["hostname"]
    if "nodeName" in addr:
        ep["nodeName"] = addr["nodeName"]
    ep["targetRef"] = addr["targetRef"]
    return ep
