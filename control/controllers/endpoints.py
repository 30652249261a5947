"""Endpoints: for each Service with a selector, the pods behind it, as core/v1 Endpoints.

Ready pods are `addresses`, the rest `notReadyAddresses` (all ready with
publishNotReadyAddresses); terminating and finished pods are left out. Ports are resolved per
pod: a numeric targetPort as is, a named one through that pod's container ports (a pod that
lacks the name is left out of that port), so pods with different port sets land in different
subsets. `ServicePods` (shared with the EndpointSlice controller) maps pods to Services.
"""

from __future__ import annotations

from typing import Any

from control.clientbase import Client, Obj
from control.clock import Clock
from control.controllers.base import Controller
from control.controllers.util import deep, is_pod_ready, is_terminating, meta
from control.errors import AlreadyExists, NotFound
from control.informer import Informer, object_key
from control.models.selectors import selector_from_labels

__all__ = ["EndpointsController", "PortTuple", "ServicePods", "resolve_ports"]

PortTuple = tuple[tuple[str, int, str, str], ...]     # (name, port, protocol, appProtocol)
HEADLESS_LABEL = "service.kubernetes.io/headless"


def resolve_ports(svc: Obj, pod: Obj) -> PortTuple:
    """The Service's ports as this pod serves them; ports it cannot serve are left out."""
    out: list[tuple[str, int, str, str]] = []
    containers = (pod.get("spec") or {}).get("containers") or []
    for sp in (svc.get("spec") or {}).get("ports") or []:
        proto = sp.get("protocol") or "TCP"
        target: Any = sp.get("targetPort", sp.get("port"))
        number: int | None = None
        if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
            number = int(target)
        else:
            for c in containers:
                for cp in c.get("ports") or []:
                    if cp.get("name") == target and (cp.get("protocol") or "TCP") == proto:
                        number = int(cp["containerPort"])
        if number is not None:
            out.append((sp.get("name") or "", number, proto, sp.get("appProtocol") or ""))
    return tuple(out)


class ServicePods:
    """Which Services select which pods, from the service and pod informers."""

    def __init__(self, services: Informer, pods: Informer) -> None:
        self.services = services
        self.pods = pods

    @staticmethod
    def selects(svc: Obj, pod: Obj) -> bool:
        sel = (svc.get("spec") or {}).get("selector")
        return bool(sel) and selector_from_labels(sel).matches(meta(pod).get("labels"))

    def services_for(self, *pods: Obj) -> set[str]:
        keys: set[str] = set()
        for pod in pods:
            for svc in self.services.list(namespace=meta(pod).get("namespace")):
                if self.selects(svc, pod):
                    keys.add(object_key(svc))
        return keys

    def pods_for(self, svc: Obj) -> list[Obj]:
        """Selected pods that have an IP and are not finished."""
        return [p for p in self.pods.list(namespace=meta(svc).get("namespace"))
                if self.selects(svc, p) and (p.get("status") or {}).get("podIP")
                and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]

    def watch(self, enqueue: Any) -> None:
        self.services.add_handler(on_add=lambda s: enqueue(object_key(s)),
                                  on_update=lambda o, n: enqueue(object_key(n)),
                                  on_delete=lambda s: enqueue(object_key(s)))

        def pod_changed(*pods: Obj) -> None:
            for key in self.services_for(*pods):
                enqueue(key)
        self.pods.add_handler(on_add=pod_changed, on_update=pod_changed, on_delete=pod_changed)


def address_of(svc: Obj, pod: Obj) -> dict[str, Any]:
    pm, spec = meta(pod), pod.get("spec") or {}
    addr: dict[str, Any] = {"ip": (pod.get("status") or {})["podIP"]}
    if spec.get("hostname") and spec.get("subdomain") == meta(svc).get("name"):
        addr["hostname"] = spec["hostname"]
    if spec.get("nodeName"):
        addr["nodeName"] = spec["nodeName"]
    addr["targetRef"] = {"kind": "Pod", "namespace": pm.get("namespace"), "name": pm.get("name"),
                         "uid": pm.get("uid")}
    return addr


def service_labels(svc: Obj) -> dict[str, str]:
    labels = dict(meta(svc).get("labels") or {})
    if (svc.get("spec") or {}).get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    return labels


class EndpointsController(Controller):
    name = "endpoints"

    def __init__(self, client: Client, *, clock: Clock, services: Informer, pods: Informer,
                 endpoints: Informer, workers: int = 2) -> None:
        super().__init__(client, clock=clock, workers=workers)
        self.map = ServicePods(services, pods)
        self.endpoints = endpoints
        self.map.watch(self.enqueue)
        endpoints.add_handler(on_delete=lambda e: self.enqueue(object_key(e)))

    def subsets(self, svc: Obj) -> list[Obj]:
        publish = bool((svc.get("spec") or {}).get("publishNotReadyAddresses"))
        groups: dict[PortTuple, dict[str, list[Obj]]] = {}
        has_ports = bool((svc.get("spec") or {}).get("ports"))
        for pod in self.map.pods_for(svc):
            if is_terminating(pod):
                continue
            ports = resolve_ports(svc, pod)
            if has_ports and not ports:
                continue
            g = groups.setdefault(ports, {"addresses": [], "notReadyAddresses": []})
            ready = publish or is_pod_ready(pod)
            g["addresses" if ready else "notReadyAddresses"].append(address_of(svc, pod))
        out = []
        for ports, g in sorted(groups.items()):
            subset: dict[str, Any] = {}
            for k in ("addresses", "notReadyAddresses"):
                if g[k]:
                    subset[k] = sorted(g[k], key=lambda a: _ip_key(a["ip"]))
            if ports:
                subset["ports"] = [_port(p) for p in ports]
            out.append(subset)
        return out

    async def reconcile(self, key: str) -> None:
        svc = self.map.services.get(key)
        ns, _, name = key.partition("/")
        if svc is None:
            if self.endpoints.get(key) is not None:
                try:
                    await self.client.delete("endpoints", name, namespace=ns)
                except NotFound:
                    pass
            return
        if not (svc.get("spec") or {}).get("selector"):
            return                              # user-managed Endpoints
        subsets = self.subsets(svc)
        labels = service_labels(svc)
        current = self.endpoints.get(key)
        if current is None:
            body: Obj = {"apiVersion": "v1", "kind": "Endpoints",
                         "metadata": {"name": name, "namespace": ns, "labels": labels}}
            if subsets:
                body["subsets"] = subsets
            try:
                await self.client.create("endpoints", body, namespace=ns)
            except AlreadyExists:
                fresh = await self.client.get("endpoints", name, namespace=ns)
                await self._update(fresh, subsets, labels)
            return
        await self._update(current, subsets, labels)

    async def _update(self, current: Obj, subsets: list[Obj], labels: dict[str, str]) -> None:
        if (current.get("subsets") or []) == subsets and (meta(current).get("labels") or {}) == labels:
            return
        body = deep(current)
        body["metadata"]["labels"] = labels
        if subsets:
            body["subsets"] = subsets
        else:
            body.pop("subsets", None)
        await self.client.update("endpoints", body)


def _port(p: tuple[str, int, str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"port": p[1], "protocol": p[2]}
    if p[0]:
        out["name"] = p[0]
    if p[3]:
        out["appProtocol"] = p[3]
    return out


def _ip_key(ip: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in ip.split("."))
    except ValueError:
        return (1 << 30,)
