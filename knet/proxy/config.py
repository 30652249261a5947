"""The proxy's configuration side, split from the data path the kube-proxy way.

`ServiceHandler` and `EndpointSliceHandler` (defined in `knet.servicesource`, re-exported
here) are the seams a watch source (informers) calls with wire-form dicts (core/v1 Service,
discovery.k8s.io/v1 EndpointSlice). `ConfigTracker` implements both: it keeps the latest
objects, and once both kinds have synced it folds them into an immutable table of
`ServicePort`s, coalescing bursts of changes (one rebuild at most every `delay` seconds,
default 50 ms, so a change is applied within 100 ms). The table is per node: which
endpoints a port uses depends on the node (traffic policies, PreferClose: topology.py).
Services labelled `service.kubernetes.io/service-proxy-name` (another proxy's) or
`service.kubernetes.io/headless` are left alone, as kube-proxy does. The annotation
`knet.dev/proxy-algorithm` picks a Service's balancing algorithm (balancer.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from knet.proxy.balancer import (
    ALGORITHMS,
    DEFAULT_AFFINITY_SECONDS,
    MAX_AFFINITY_SECONDS,
    Endpoint,
)
from knet.proxy.topology import SERVE, Candidate, select
from knet.servicesource import EndpointSliceHandler, ServiceHandler

log = logging.getLogger(__name__)

Obj = dict[str, Any]
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
L7_APP_PROTOCOLS = frozenset({"http"})
SERVICE_PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name"
HEADLESS_LABEL = "service.kubernetes.io/headless"
ALGORITHM_ANNOTATION = "knet.dev/proxy-algorithm"

__all__ = [
    "ALGORITHM_ANNOTATION",
    "HEADLESS_LABEL",
    "SERVICE_NAME_LABEL",
    "SERVICE_PROXY_NAME_LABEL",
    "ConfigTracker",
    "EndpointSliceHandler",
    "ServiceHandler",
    "ServicePort",
    "ServiceTable",
    "build_table",
    "service_ports",
]


@dataclass(frozen=True, slots=True)
class ServicePort:
    namespace: str
    name: str
    port_name: str
    cluster_ip: str
    port: int
    protocol: str  # "TCP" | "UDP"
    node_port: int | None = None
    app_protocol: str | None = None
    affinity_seconds: float | None = None  # None: sessionAffinity None
    endpoints: tuple[Endpoint, ...] = ()   # what ClusterIP traffic from this node uses
    algorithm: str | None = None           # the Service's annotation; None: the cluster's
    verdict: str = SERVE                   # with no endpoints: topology.REJECT or DROP
    why: str = ""                          # how the endpoints were chosen (topology.py)
    external: tuple[Endpoint, ...] | None = None  # NodePort/LB/externalIP traffic's; None: `endpoints`
    external_verdict: str = SERVE
    scope: str = ""  # "external": the port as NodePort/LB traffic sees it (external_side)
    external_local: bool = False  # externalTrafficPolicy: Local (client source kept, source.py)
    internal_local: bool = False  # internalTrafficPolicy: Local (`endpoints` are this node's)

    @property
    def key(self) -> str:
        base = f"{self.namespace}/{self.name}"
        key = f"{base}:{self.port_name}" if self.port_name else base
        return f"{key}@{self.scope}" if self.scope else key

    @property
    def service(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def is_http(self) -> bool:
        return self.protocol == "TCP" and (self.app_protocol or "").lower() in L7_APP_PROTOCOLS

    def external_side(self) -> ServicePort:
        """The port as NodePort/LoadBalancer traffic sees it (itself unless the two traffic
        policies differ: then a copy with the external endpoints and its own balancer key)."""
        if self.external is None:
            return self
        return replace(self, endpoints=self.external, verdict=self.external_verdict,
                       external=None, scope="external")

    def listen_shape(self) -> tuple[object, ...]:
        """What decides the listeners (a change here means re-listening)."""
        return (self.cluster_ip, self.port, self.protocol, self.node_port, self.is_http)

    def __repr__(self) -> str:
        return (f"<ServicePort {self.key} {self.protocol} {self.cluster_ip}:{self.port}"
                f" {len(self.endpoints)} endpoints>")


ServiceTable = Mapping[str, ServicePort]


def _meta_key(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name', '')}"


def _affinity(spec: Obj) -> float | None:
    if spec.get("sessionAffinity") != "ClientIP":
        return None
    cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
    seconds = cfg.get("timeoutSeconds") or DEFAULT_AFFINITY_SECONDS
    return float(min(max(int(seconds), 1), MAX_AFFINITY_SECONDS))


def _slice_candidates(slices: list[Obj], port_name: str, protocol: str,
                      target_port: object) -> list[Candidate]:
    """Endpoints of one service port with their conditions: the slice port named like the
    service port carries the resolved number (a targetPort by name is resolved per pod)."""
    out: list[Candidate] = []
    for sl in slices:
        if sl.get("addressType", "IPv4") != "IPv4":  # ClusterIPs here are IPv4 only
            continue
        numbers = [p.get("port") for p in sl.get("ports") or []
                   if (p.get("name") or "") == port_name
                   and (p.get("protocol") or "TCP") == protocol]
        if not numbers and not sl.get("ports") and isinstance(target_port, int):
            numbers = [target_port]
        number = next((n for n in numbers if isinstance(n, int)), None)
        if number is None:
            continue
        for ep in sl.get("endpoints") or []:
            ref = ep.get("targetRef") or {}
            pod = f"{ref.get('namespace', '')}/{ref['name']}" if ref.get("name") else ""
            cond, node = ep.get("conditions") or {}, ep.get("nodeName") or ""
            out.extend(Candidate.from_conditions(Endpoint(addr, number, pod), cond, node)
                       for addr in ep.get("addresses") or [])
    return out


def ignored(service: Obj) -> str:
    """Why kube-proxy leaves this Service alone ("" if it does not)."""
    labels = (service.get("metadata") or {}).get("labels") or {}
    if SERVICE_PROXY_NAME_LABEL in labels:
        return f"label {SERVICE_PROXY_NAME_LABEL}={labels[SERVICE_PROXY_NAME_LABEL]}"
    if HEADLESS_LABEL in labels:
        return f"label {HEADLESS_LABEL}"
    return ""


def _algorithm(service: Obj) -> str | None:
    annotations = (service.get("metadata") or {}).get("annotations") or {}
    name = annotations.get(ALGORITHM_ANNOTATION)
    if name is None:
        return None
    if name not in ALGORITHMS:
        log.warning("service %s: annotation %s=%r is not one of %s; using the cluster's "
                    "algorithm", _meta_key(service), ALGORITHM_ANNOTATION, name,
                    ", ".join(ALGORITHMS))
        return None
    return str(name)


def service_ports(service: Obj, slices: list[Obj], node: str = "") -> list[ServicePort]:
    """The proxied ports of one Service as seen from `node` (none for headless, ExternalName
    or a Service kube-proxy ignores)."""
    spec = service.get("spec") or {}
    meta = service.get("metadata") or {}
    cluster_ip = spec.get("clusterIP") or ""
    if spec.get("type") == "ExternalName" or cluster_ip in ("", "None") or ignored(service):
        return []
    itp_local = spec.get("internalTrafficPolicy") == "Local"
    etp_local = spec.get("externalTrafficPolicy") == "Local"
    distribution = spec.get("trafficDistribution") or ""
    algorithm = _algorithm(service)
    with_node_port = spec.get("type") in ("NodePort", "LoadBalancer")
    # traffic to node ports, LoadBalancer IPs and externalIPs is external (kube-proxy's
    # categories): externalTrafficPolicy, never internalTrafficPolicy, picks its endpoints
    externally_reachable = with_node_port or bool(spec.get("externalIPs"))
    affinity = _affinity(spec)
    out = []
    for p in spec.get("ports") or []:
        protocol = p.get("protocol") or "TCP"
        if protocol not in ("TCP", "UDP") or not isinstance(p.get("port"), int):
            log.warning("service %s: port %r skipped (only TCP and UDP ports are proxied)",
                        _meta_key(service), p.get("name") or p.get("port"))
            continue
        name = p.get("name") or ""
        target = p.get("targetPort", p["port"])
        cands = _slice_candidates(slices, name, protocol, target)
        internal = select(cands, node=node, local=itp_local, distribution=distribution)
        external = (select(cands, node=node, local=etp_local, distribution=distribution)
                    if externally_reachable and itp_local != etp_local else None)
        out.append(ServicePort(
            namespace=meta.get("namespace") or "default", name=meta.get("name", ""),
            port_name=name, cluster_ip=cluster_ip, port=p["port"], protocol=protocol,
            node_port=p.get("nodePort") if with_node_port else None,
            app_protocol=p.get("appProtocol"), affinity_seconds=affinity,
            external_local=etp_local, internal_local=itp_local, endpoints=internal.endpoints, algorithm=algorithm,
            verdict=internal.verdict,
            why=internal.why, external=external.endpoints if external else None,
            external_verdict=external.verdict if external else internal.verdict))
    return out


def build_table(services: Mapping[str, Obj], slices_by_service: Mapping[str, list[Obj]],
                node: str = "") -> ServiceTable:
    table: dict[str, ServicePort] = {}
    for key in sorted(services):
        for sp in service_ports(services[key], slices_by_service.get(key, []), node):
            table[sp.key] = sp
    return MappingProxyType(table)


ApplyFn = Callable[[ServiceTable], Awaitable[None]]


class ConfigTracker:
    """Both handler protocols: keeps the latest objects, calls `apply(table)` (serialized)
    once both kinds have synced and after every burst of changes."""

    def __init__(self, *, apply: ApplyFn, delay: float = 0.05, node: str = "") -> None:
        self._apply_fn = apply
        self._node = node
        self._delay = delay
        self._services: dict[str, Obj] = {}
        self._slices: dict[str, Obj] = {}  # slice key -> slice
        self._synced = {"services": False, "endpointslices": False}
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._dirty = False
        self.table: ServiceTable = MappingProxyType({})

    @property
    def synced(self) -> bool:
        return all(self._synced.values())

    def on_service_add(self, service: Obj) -> None:
        self._services[_meta_key(service)] = service
        self._changed()

    def on_service_update(self, old: Obj, new: Obj) -> None:
        self.on_service_add(new)

    def on_service_delete(self, service: Obj) -> None:
        self._services.pop(_meta_key(service), None)
        self._changed()

    def on_service_synced(self) -> None:
        self._synced["services"] = True
        self._changed()

    def on_endpointslice_add(self, slice_: Obj) -> None:
        self._slices[_meta_key(slice_)] = slice_
        self._changed()

    def on_endpointslice_update(self, old: Obj, new: Obj) -> None:
        self.on_endpointslice_add(new)

    def on_endpointslice_delete(self, slice_: Obj) -> None:
        self._slices.pop(_meta_key(slice_), None)
        self._changed()

    def on_endpointslice_synced(self) -> None:
        self._synced["endpointslices"] = True
        self._changed()

    def _changed(self) -> None:
        self._dirty = True
        if not self.synced or self._timer is not None:
            return
        self._timer = asyncio.get_running_loop().call_later(self._delay, self._flush)

    def _flush(self) -> None:
        self._timer = None
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self._dirty:
            self._dirty = False
            by_service: dict[str, list[Obj]] = {}
            for sl in self._slices.values():
                labels = (sl.get("metadata") or {}).get("labels") or {}
                svc = labels.get(SERVICE_NAME_LABEL)
                if svc:
                    ns = (sl.get("metadata") or {}).get("namespace") or "default"
                    by_service.setdefault(f"{ns}/{svc}", []).append(sl)
            self.table = build_table(self._services, by_service, self._node)
            try:
                await self._apply_fn(self.table)
            except Exception:  # the tracker must outlive one bad apply
                log.exception("proxy config: applying %d service ports failed", len(self.table))

    async def wait_applied(self) -> None:
        """Wait until pending changes are applied (tests, shutdown)."""
        while self._timer is not None or (self._task is not None and not self._task.done()):
            await asyncio.sleep(self._delay / 2)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None:
            self._task.cancel()
