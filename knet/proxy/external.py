"""Traffic from outside the cluster: LoadBalancer addresses, externalIPs, NodePorts'
`externalTrafficPolicy`, `loadBalancerSourceRanges` and `healthCheckNodePort`, per node.

`ExternalView.update(services, slices)` reads the wire objects the proxier keeps and answers
the proxier's questions for this node:
- (which endpoints external traffic uses, externalTrafficPolicy, is `ServicePort.external_side()`,
  topology.py's choice)
- `addresses(sp)`: where external traffic for the port arrives here: every node IP on its
  nodePort, every LoadBalancer address (`status.loadBalancer.ingress`: on every node, so pods
  anywhere reach it locally as kube-proxy short-circuits them) and the Service's externalIPs
  that are this node's own addresses, on the Service port.
- `service_ips()`: the LoadBalancer addresses to put on the node's service device.
- `announced()`: the addresses this node announces on the host side (the controller's choice
  in the `lb.knet.dev/announced-by` annotation, control/controllers/loadbalancer.py).
- `ranges(ip)`, `health()`: source ranges per LoadBalancer address; healthCheckNodePort ->
  (namespace, name, local endpoints) for LoadBalancer + Local Services.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from control.models.lbvalidation import needs_health_check, source_ranges
from knet.proxy.config import ServicePort

__all__ = ["ANNOUNCE_ANNOTATION", "External", "ExternalView", "external_of"]

Obj = dict[str, Any]
ANNOUNCE_ANNOTATION = "lb.knet.dev/announced-by"   # control/controllers/loadbalancer.py
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
HealthKey = tuple[str, str, int]                   # (namespace, name, local endpoints)


def _ipv4(value: object) -> str | None:
    try:
        return str(ipaddress.IPv4Address(str(value)))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class External:
    """What one Service exposes outside the cluster."""
    namespace: str
    name: str
    lb_ips: tuple[str, ...] = ()
    external_ips: tuple[str, ...] = ()
    source_ranges: tuple[str, ...] = ()   # IPv4 CIDRs; () = everyone
    local: bool = False                   # externalTrafficPolicy: Local
    health_port: int | None = None
    announcer: str | None = None

    def __repr__(self) -> str:
        return (f"<External {self.namespace}/{self.name} lb={','.join(self.lb_ips) or '-'} "
                f"ext={','.join(self.external_ips) or '-'} local={self.local}>")


def external_of(svc: Obj) -> External | None:
    """The external side of a Service (None: it has none)."""
    spec, meta = svc.get("spec") or {}, svc.get("metadata") or {}
    kind = spec.get("type") or "ClusterIP"
    if kind == "ExternalName" or spec.get("clusterIP") in (None, "", "None"):
        return None
    lb = []
    if kind == "LoadBalancer":
        ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        lb = [ip for i in ingress if isinstance(i, dict) and (ip := _ipv4(i.get("ip")))]
    ext = [ip for a in spec.get("externalIPs") or [] if (ip := _ipv4(a))]
    if kind not in ("NodePort", "LoadBalancer") and not ext:
        return None
    ranges: list[str] = []
    for r in source_ranges(svc) if kind == "LoadBalancer" else []:
        try:
            net = ipaddress.ip_network(r, strict=False)
        except ValueError:
            continue
        if net.version == 4:
            ranges.append(str(net))
    if kind == "LoadBalancer" and source_ranges(svc) and not ranges:
        ranges = ["255.255.255.255/32"]   # IPv6 ranges only: no IPv4 client is allowed
    hc = spec.get("healthCheckNodePort")
    return External(
        namespace=meta.get("namespace") or "default", name=meta.get("name", ""),
        lb_ips=tuple(lb), external_ips=tuple(ext), source_ranges=tuple(ranges),
        local=spec.get("externalTrafficPolicy") == "Local",
        health_port=int(hc) if needs_health_check(spec) and isinstance(hc, int) else None,
        announcer=((meta.get("annotations") or {}).get(ANNOUNCE_ANNOTATION) or None))


def _local_ips(slices: Iterable[Obj], node: str) -> dict[str, set[str]]:
    """service key -> addresses of its ready endpoints on `node`."""
    out: dict[str, set[str]] = {}
    for sl in slices:
        meta = sl.get("metadata") or {}
        svc = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if not svc:
            continue
        key = f"{meta.get('namespace') or 'default'}/{svc}"
        for ep in sl.get("endpoints") or []:
            if ep.get("nodeName") == node and (ep.get("conditions") or {}).get("ready") \
                    is not False:
                out.setdefault(key, set()).update(ep.get("addresses") or [])
    return out


class ExternalView:
    def __init__(self, node: str, node_ips: Iterable[str]) -> None:
        self.node = node
        self.node_ips = tuple(node_ips)
        self.by_service: dict[str, External] = {}
        self.local: dict[str, set[str]] = {}

    def __repr__(self) -> str:
        return f"<ExternalView {self.node} {len(self.by_service)} services>"

    def update(self, services: Mapping[str, Obj], slices: Iterable[Obj]) -> None:
        self.by_service = {k: e for k, svc in services.items() if (e := external_of(svc))}
        self.local = _local_ips(slices, self.node)

    def addresses(self, sp: ServicePort) -> list[tuple[str, int]]:
        out = [(ip, sp.node_port) for ip in self.node_ips] if sp.node_port else []
        ext = self.by_service.get(sp.service)
        if ext is not None:
            out += [(ip, sp.port) for ip in ext.lb_ips]
            out += [(ip, sp.port) for ip in ext.external_ips if ip in self.node_ips]
        return out

    def service_ips(self) -> set[str]:
        return {ip for e in self.by_service.values() for ip in e.lb_ips}

    def announced(self) -> dict[str, str]:
        """LoadBalancer address -> this node's underlay address, for those it announces."""
        if not self.node_ips:
            return {}
        return {ip: self.node_ips[0] for e in self.by_service.values()
                if e.announcer == self.node for ip in e.lb_ips}

    def ranges(self, ip: str) -> tuple[str, ...]:
        """The source ranges allowed to reach LoadBalancer address `ip` (() = everyone)."""
        for e in self.by_service.values():
            if ip in e.lb_ips:
                return e.source_ranges
        return ()

    def health(self) -> dict[int, HealthKey]:
        out: dict[int, HealthKey] = {}
        for key, e in sorted(self.by_service.items()):
            if e.health_port:
                out[e.health_port] = (e.namespace, e.name, len(self.local.get(key, ())))
        return out
