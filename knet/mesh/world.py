"""What the mesh compilers look things up in: service ports, pod labels, namespace labels,
DestinationRules and ReferenceGrants, indexed once per rebuild.

`World.backend(...)` turns a destination (service, port, optional subset) into a `Backend`
with its endpoints (the subset's pods only) and the DestinationRule's policies (the
subset's trafficPolicy over the rule's); an unknown Service or subset gives a Backend with
the status the L7 path must answer (500 per Gateway API, 503 as Envoy has no cluster).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from control.models.meshgateway import ReferenceGrant, parse_duration
from control.models.meshistio import DestinationRule, TrafficPolicy
from knet.mesh.types import Backend, ConnectionPool, LoadBalancing, Outlier
from knet.proxy.config import ServicePort, ServiceTable

__all__ = ["CLUSTER_DOMAIN", "World", "resolve_host"]

CLUSTER_DOMAIN = "cluster.local"
Labels = Mapping[str, str]


def resolve_host(host: str, namespace: str) -> str | None:
    """An Istio host ("reviews", "reviews.ns", "reviews.ns.svc[.cluster.local]") as the
    Service key "ns/name" it names, relative to `namespace`; None for other hosts."""
    parts = host.lower().rstrip(".").split(".")
    if len(parts) == 1:
        return f"{namespace}/{parts[0]}"
    if len(parts) == 2 or (len(parts) >= 3 and parts[2] == "svc"
                           and ".".join(parts[3:]) in ("", CLUSTER_DOMAIN)):
        return f"{parts[1]}/{parts[0]}"
    return None


def _age(md_created: str | None, name: str) -> tuple[str, str]:
    return (md_created or "9999", name)


@dataclass
class World:
    services: ServiceTable
    pod_labels: Mapping[str, Labels] = field(default_factory=dict)
    namespace_labels: Mapping[str, Labels] = field(default_factory=dict)
    destination_rules: list[DestinationRule] = field(default_factory=list)
    reference_grants: list[ReferenceGrant] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ports: dict[str, dict[int, ServicePort]] = {}
        for sp in self.services.values():
            self.ports.setdefault(sp.service, {})[sp.port] = sp
        self.rules: dict[str, DestinationRule] = {}
        # the oldest rule for a host wins, as Istio merges only the first
        for dr in sorted(self.destination_rules, key=lambda d: _age(
                d.metadata.creation_timestamp, f"{d.metadata.namespace}/{d.metadata.name}")):
            if dr.spec is None:
                continue
            key = resolve_host(dr.spec.host, dr.metadata.namespace or "default")
            if key is not None:
                self.rules.setdefault(key, dr)

    def service_port(self, service: str, port: int | None) -> ServicePort | None:
        ports = self.ports.get(service) or {}
        if port is None:
            return next(iter(ports.values()), None) if len(ports) == 1 else None
        return ports.get(port)

    def ambient(self, namespace: str) -> bool:
        labels = self.namespace_labels.get(namespace) or {}
        return labels.get("istio.io/dataplane-mode") == "ambient"

    def grant_allows(self, *, from_ns: str, from_kind: str, to_ns: str, to_name: str) -> bool:
        """A ReferenceGrant in `to_ns` lets HTTPRoutes of `from_ns` reference Service
        `to_name` (Gateway API's cross-namespace rule)."""
        if from_ns == to_ns:
            return True
        for g in self.reference_grants:
            if g.metadata.namespace != to_ns or g.spec is None:
                continue
            ok_from = any(f.namespace == from_ns and f.kind == from_kind
                          and f.group == "gateway.networking.k8s.io" for f in g.spec.from_)
            ok_to = any(t.group in ("", "core") and t.kind == "Service"
                        and t.name in (None, to_name) for t in g.spec.to)
            if ok_from and ok_to:
                return True
        return False

    def backend(self, service: str, port: int | None, weight: int, *, subset: str = "",
                missing_status: int = 500) -> Backend:
        sp = self.service_port(service, port)
        number = port or (sp.port if sp else 0)
        if sp is None:
            what = (f"service {service} has no port {port}" if service in self.ports
                    else f"service {service} not found")
            return Backend(service, number, weight, subset, status=missing_status,
                           reason=what)
        dr = self.rules.get(service)
        policy = dr.spec.traffic_policy if dr is not None and dr.spec else None
        endpoints = sp.endpoints
        if subset:
            found = next((s for s in (dr.spec.subsets if dr and dr.spec else [])
                          if s.name == subset), None)
            if found is None:
                return Backend(service, number, weight, subset, status=503,
                               reason=f"subset {subset!r} of {service} is not defined by any "
                                      "DestinationRule")
            policy = _merge(policy, found.traffic_policy)
            endpoints = tuple(e for e in endpoints if _has(self.pod_labels.get(e.pod) or {},
                                                           found.labels))
        return _with_policy(Backend(service, number, weight, subset, endpoints), policy)


def _has(labels: Labels, wanted: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in wanted.items())


def _merge(base: TrafficPolicy | None, over: TrafficPolicy | None) -> TrafficPolicy | None:
    if base is None or over is None:
        return over or base
    return TrafficPolicy(load_balancer=over.load_balancer or base.load_balancer,
                         connection_pool=over.connection_pool or base.connection_pool,
                         outlier_detection=over.outlier_detection or base.outlier_detection)


def _with_policy(b: Backend, policy: TrafficPolicy | None) -> Backend:
    if policy is None:
        return b
    lb, pool, outlier = b.lb, None, None
    if policy.load_balancer is not None:
        ch = policy.load_balancer.consistent_hash
        if ch is not None:
            lb = LoadBalancing("CONSISTENT_HASH", (ch.http_header_name or "").lower() or None,
                               ch.http_query_parameter_name, bool(ch.use_source_ip))
        elif policy.load_balancer.simple in ("LEAST_REQUEST", "LEAST_CONN"):
            lb = LoadBalancing("LEAST_REQUEST")
        elif policy.load_balancer.simple == "RANDOM":
            lb = LoadBalancing("RANDOM")
    cp = policy.connection_pool
    if cp is not None:
        pool = ConnectionPool(
            max_connections=cp.tcp.max_connections if cp.tcp else None,
            max_pending=cp.http.http1_max_pending_requests if cp.http else None,
            max_requests=cp.http.http2_max_requests if cp.http else None,
            max_requests_per_connection=cp.http.max_requests_per_connection if cp.http else None,
            max_retries=cp.http.max_retries if cp.http else None)
    od = policy.outlier_detection
    if od is not None:
        outlier = Outlier(
            consecutive_5xx=od.consecutive5xx_errors if od.consecutive5xx_errors is not None
            else 5,
            consecutive_gateway=od.consecutive_gateway_errors,
            interval=parse_duration(od.interval) if od.interval else 10.0,
            base_ejection=parse_duration(od.base_ejection_time) if od.base_ejection_time
            else 30.0,
            max_ejection_percent=od.max_ejection_percent if od.max_ejection_percent
            is not None else 10)
    return Backend(b.service, b.port, b.weight, b.subset, b.endpoints, lb=lb, pool=pool,
                   outlier=outlier)
