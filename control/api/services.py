"""Service address bookkeeping for the object layer: fills in `spec.clusterIP(s)` and
`spec.ports[*].nodePort` on create and update, releases them on delete, and rebuilds the
allocators from the stored Services at start.

Every change is staged as an `Allocation` (what was taken, what to free once the write is
durable) so that a failed store write gives everything back: nothing half-written survives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from control.api.allocators import IPAllocator, PortAllocator
from control.errors import Cause, Invalid
from control.models.lbvalidation import needs_health_check

Obj = dict[str, Any]
_NODE_PORT_TYPES = ("NodePort", "LoadBalancer")


@dataclass
class Allocation:
    ips: list[str] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    free_ips: list[str] = field(default_factory=list)
    free_ports: list[int] = field(default_factory=list)


def _node_ports(ports: Any) -> set[Any]:
    return {p["nodePort"] for p in ports or [] if isinstance(p, dict) and p.get("nodePort")}


def _externally_accessible(spec: Obj) -> bool:
    return spec.get("type") in _NODE_PORT_TYPES or bool(spec.get("externalIPs"))


class ServiceAllocator:
    def __init__(self, *, ips: IPAllocator | None = None,
                 ports: PortAllocator | None = None) -> None:
        self.ips = ips or IPAllocator()
        self.ports = ports or PortAllocator()

    def mark(self, svc: Obj) -> None:
        """Record what a stored Service holds (at start)."""
        spec = svc.get("spec") or {}
        for ip in spec.get("clusterIPs") or [spec.get("clusterIP")]:
            if ip and ip != "None":
                self.ips.mark(ip)
        for port in spec.get("ports") or []:
            if isinstance(port, dict) and port.get("nodePort"):
                self.ports.mark(int(port["nodePort"]))
        if spec.get("healthCheckNodePort"):
            self.ports.mark(int(spec["healthCheckNodePort"]))

    def release(self, svc: Obj) -> None:
        spec = svc.get("spec") or {}
        for ip in set(spec.get("clusterIPs") or []) | {spec.get("clusterIP")}:
            self.ips.release(ip)
        for port in spec.get("ports") or []:
            if isinstance(port, dict):
                self.ports.release(port.get("nodePort"))
        self.ports.release(spec.get("healthCheckNodePort"))

    def commit(self, alloc: Allocation) -> None:
        for ip in alloc.free_ips:
            self.ips.release(ip)
        for port in alloc.free_ports:
            self.ports.release(port)

    def rollback(self, alloc: Allocation) -> None:
        """Give back what alloc took (once: a second rollback is a no-op)."""
        for ip in alloc.ips:
            self.ips.release(ip)
        for port in alloc.ports:
            self.ports.release(port)
        alloc.ips.clear()
        alloc.ports.clear()

    @staticmethod
    def drop_type_dependent(svc: Obj, old: Obj) -> None:
        """Before admission of an update: a type change clears what the new type does not
        use, where the user left it as it was (kube-apiserver's dropTypeDependentFields):
        clusterIP(s) and IP families leaving for ExternalName, nodePorts leaving
        NodePort/LoadBalancer (freed when the write lands), externalTrafficPolicy when no
        longer externally accessible, the load-balancer fields and status."""
        spec, old_spec = svc.get("spec"), old.get("spec") or {}
        if not isinstance(spec, dict) or not isinstance(old_spec, dict):
            return
        kind, old_kind = spec.get("type") or "ClusterIP", old_spec.get("type") or "ClusterIP"
        if old_kind != "ExternalName" and kind == "ExternalName":
            for keys in (("clusterIP", "clusterIPs"), ("ipFamilies",), ("ipFamilyPolicy",)):
                if all(spec.get(k) == old_spec.get(k) for k in keys):
                    for k in keys:
                        spec.pop(k, None)
        ports = [p for p in spec.get("ports") or [] if isinstance(p, dict)]
        if old_kind in _NODE_PORT_TYPES and kind not in _NODE_PORT_TYPES \
                and _node_ports(ports) <= _node_ports(old_spec.get("ports")):
            for port in ports:
                port.pop("nodePort", None)
        if old_kind == "LoadBalancer" and kind != "LoadBalancer":
            for key in ("healthCheckNodePort", "allocateLoadBalancerNodePorts",
                        "loadBalancerClass"):
                if spec.get(key) == old_spec.get(key):
                    spec.pop(key, None)
        if needs_health_check(old_spec) and not needs_health_check(spec) \
                and spec.get("healthCheckNodePort") == old_spec.get("healthCheckNodePort"):
            spec.pop("healthCheckNodePort", None)
        if _externally_accessible(old_spec) and not _externally_accessible(spec) \
                and spec.get("externalTrafficPolicy") == old_spec.get("externalTrafficPolicy"):
            spec.pop("externalTrafficPolicy", None)
        if kind != "LoadBalancer" and isinstance(svc.get("status"), dict):
            svc["status"]["loadBalancer"] = {}

    def on_create(self, svc: Obj) -> Allocation:
        alloc = Allocation()
        try:
            self._assign_ip(svc, alloc)
            self._assign_ports(svc, alloc, old_ports={})
            self._assign_health_check(svc, alloc, old=None)
        except Exception:
            self.rollback(alloc)
            raise
        return alloc

    def on_update(self, svc: Obj, old: Obj) -> Allocation:
        alloc = Allocation()
        spec, old_spec = svc.setdefault("spec", {}), old.get("spec") or {}
        name = svc["metadata"]["name"]
        old_ip = old_spec.get("clusterIP")
        if spec.get("type") == "ExternalName":
            pass                                           # its clusterIP is freed below
        elif not spec.get("clusterIP") and old_ip:
            spec["clusterIP"] = old_ip
            spec["clusterIPs"] = list(old_spec.get("clusterIPs") or [old_ip])
        elif old_ip and spec.get("clusterIP") != old_ip and spec.get("type") != "ExternalName":
            raise Invalid(f'Service "{name}" is invalid: spec.clusterIPs[0]: Invalid value: '
                          f'{spec.get("clusterIP")!r}: may not change once set',
                          kind="Service", name=name,
                          causes=[Cause("spec.clusterIPs[0]", "may not change once set")])
        old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                     for p in old_spec.get("ports") or [] if isinstance(p, dict)}
        try:
            if not spec.get("clusterIP"):
                self._assign_ip(svc, alloc)
            self._assign_ports(svc, alloc, old_ports=old_ports)
            self._assign_health_check(svc, alloc, old=old_spec.get("healthCheckNodePort"))
        except Exception:
            self.rollback(alloc)
            raise
        kept = {p.get("nodePort") for p in spec.get("ports") or [] if isinstance(p, dict)}
        kept.add(spec.get("healthCheckNodePort"))
        alloc.free_ports = [p for p in [*old_ports.values(), old_spec.get("healthCheckNodePort")]
                            if p and p not in kept]
        if spec.get("type") == "ExternalName" and old_ip and old_ip != "None":
            alloc.free_ips = [old_ip]
        return alloc

    def _assign_ip(self, svc: Obj, alloc: Allocation) -> None:
        spec = svc.setdefault("spec", {})
        if spec.get("type") == "ExternalName":
            return
        requested = spec.get("clusterIP") or (spec.get("clusterIPs") or [None])[0]
        if requested == "None":
            spec["clusterIP"], spec["clusterIPs"] = "None", ["None"]
            return
        ip = self.ips.allocate(service=svc["metadata"]["name"], requested=requested)
        alloc.ips.append(ip)
        spec["clusterIP"], spec["clusterIPs"] = ip, [ip]
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")

    def _assign_ports(self, svc: Obj, alloc: Allocation,
                      old_ports: dict[tuple[Any, Any], Any]) -> None:
        spec = svc["spec"]
        wants = spec.get("type") in _NODE_PORT_TYPES
        auto = wants and not (spec.get("type") == "LoadBalancer"
                              and spec.get("allocateLoadBalancerNodePorts") is False)
        name = svc["metadata"]["name"]
        for i, port in enumerate(spec.get("ports") or []):
            if not isinstance(port, dict):
                continue
            if not wants:
                port.pop("nodePort", None)
                continue
            key = (port.get("port"), port.get("protocol", "TCP"))
            requested = port.get("nodePort")
            if requested and requested == old_ports.get(key):
                continue                                   # kept as it was
            if not requested and old_ports.get(key):
                port["nodePort"] = old_ports[key]
                continue
            if not requested and not auto:                 # allocateLoadBalancerNodePorts
                continue
            got = self.ports.allocate(service=name, field=f"spec.ports[{i}].nodePort",
                                      requested=int(requested) if requested else None)
            alloc.ports.append(got)
            port["nodePort"] = got

    def _assign_health_check(self, svc: Obj, alloc: Allocation, *, old: Any) -> None:
        """healthCheckNodePort for a LoadBalancer with externalTrafficPolicy Local: the one
        asked for, else the one it had, else a free NodePort; it may not change while needed
        (kube-apiserver's words)."""
        spec = svc["spec"]
        name = svc["metadata"]["name"]
        if not needs_health_check(spec):
            spec.pop("healthCheckNodePort", None)
            return
        requested = spec.get("healthCheckNodePort")
        if old and requested and requested != old:
            field = "spec.healthCheckNodePort"
            msg = (f"Invalid value: {requested}: cannot change healthCheckNodePort on "
                   "loadBalancer service with externalTraffic=Local during update")
            raise Invalid(f'Service "{name}" is invalid: {field}: {msg}', kind="Service",
                          name=name, causes=[Cause(field, msg, "FieldValueInvalid")])
        if old and not requested or requested and requested == old:
            spec["healthCheckNodePort"] = old
            return
        got = self.ports.allocate(service=name, field="spec.healthCheckNodePort",
                                  requested=int(requested) if requested else None)
        alloc.ports.append(got)
        spec["healthCheckNodePort"] = got
