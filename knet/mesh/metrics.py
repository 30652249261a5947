"""Golden metrics of a node proxy in Istio's standard names, through prometheus-client.

`MeshMetrics.observe(rec)` is a sink of the proxy's `FlowRing` (called once per finished
flow record, after the client pod is resolved): an HTTP record counts in
`istio_requests_total` and `istio_request_duration_milliseconds`; a TCP record in
`istio_tcp_connections_opened_total`/`_closed_total` and `istio_tcp_sent_bytes_total`/
`istio_tcp_received_bytes_total`. Labels are Istio's (source/destination workload and
namespace, destination_service as an FQDN, response_code) plus `route` (the mesh route
that matched). `metrics_routes(metrics)` serves them at GET /metrics.

Key design choice: the hot path pays one dict lookup per record. The label children of
each (source, destination, service, code, route) tuple are looked up once and kept, so the
prometheus-client `labels()` call (the expensive part: validation, locking) is paid only
the first time a tuple is seen. Each metrics object has its own registry: no globals.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

from knet.mesh.world import CLUSTER_DOMAIN
from knet.proxy.flows import FlowRecord

log = logging.getLogger(__name__)

__all__ = ["DURATION_BUCKETS_MS", "UNKNOWN", "MeshMetrics", "metrics_routes", "workload_of"]

UNKNOWN = "unknown"  # Istio's value for a peer it cannot name
# Istio's default buckets for istio_request_duration_milliseconds
DURATION_BUCKETS_MS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000,
                       60000, 300000, 600000, 1800000, 3600000)
_PEERS = ("source_workload", "source_workload_namespace", "destination_workload",
          "destination_workload_namespace", "destination_service")
HTTP_LABELS = (*_PEERS, "response_code", "route")
TCP_LABELS = _PEERS
WorkloadOf = Callable[[str], "str | None"]  # "ns/pod" -> workload name


def workload_of(pod: Mapping[str, Any]) -> str:
    """A pod's workload name as Istio reports it: the Deployment of a ReplicaSet-owned pod
    (the ReplicaSet's name without its pod-template-hash), else the controlling owner's
    name (StatefulSet, DaemonSet, Job...), else the pod's own name."""
    meta = pod.get("metadata") or {}
    owners = meta.get("ownerReferences") or []
    owner = next((o for o in owners if o.get("controller")), owners[0] if owners else None)
    if owner is None:
        return str(meta.get("name") or "")
    name = str(owner.get("name") or "")
    h = (meta.get("labels") or {}).get("pod-template-hash")
    if owner.get("kind") == "ReplicaSet" and h and name.endswith(f"-{h}"):
        return name[: -len(h) - 1]
    return name


def _peer(pod: str, workloads: WorkloadOf) -> tuple[str, str]:
    if not pod or "/" not in pod:
        return UNKNOWN, UNKNOWN
    ns, _, name = pod.partition("/")
    return workloads(pod) or name, ns


def service_fqdn(service: str) -> str:
    ns, _, name = service.partition("/")
    return f"{name}.{ns}.svc.{CLUSTER_DOMAIN}" if name else service or UNKNOWN


class MeshMetrics:
    """The proxy's Prometheus metrics; `observe` is its FlowRing sink."""

    def __init__(self, *, workloads: WorkloadOf | None = None,
                 registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.workloads: WorkloadOf = workloads or (lambda _pod: None)
        r = self.registry
        self.requests = Counter("istio_requests_total", "Requests through the mesh's L7 path",
                                HTTP_LABELS, registry=r)
        self.duration = Histogram("istio_request_duration_milliseconds",
                                  "Request duration through the mesh's L7 path (ms)",
                                  HTTP_LABELS, buckets=DURATION_BUCKETS_MS, registry=r)
        self.opened = Counter("istio_tcp_connections_opened_total",
                              "TCP connections through the proxy", TCP_LABELS, registry=r)
        self.closed = Counter("istio_tcp_connections_closed_total",
                              "TCP connections through the proxy, closed", TCP_LABELS,
                              registry=r)
        self.sent = Counter("istio_tcp_sent_bytes_total", "Bytes sent to the destination",
                            TCP_LABELS, registry=r)
        self.received = Counter("istio_tcp_received_bytes_total",
                                "Bytes received from the destination", TCP_LABELS, registry=r)
        self._http: dict[tuple[str, ...], tuple[Any, Any]] = {}
        self._tcp: dict[tuple[str, ...], tuple[Any, Any, Any, Any]] = {}
        self.failed = 0

    def __repr__(self) -> str:
        return f"<MeshMetrics {len(self._http)} http series {len(self._tcp)} tcp series>"

    def _peers(self, rec: FlowRecord) -> tuple[str, str, str, str, str]:
        src, src_ns = _peer(rec.client_pod, self.workloads)
        dst, dst_ns = _peer(rec.endpoint_pod, self.workloads)
        return src, src_ns, dst, dst_ns, service_fqdn(rec.service)

    def observe(self, rec: FlowRecord) -> None:
        """Count one finished flow record (never raises: metrics must not break traffic)."""
        try:
            if rec.protocol == "http":
                self._observe_http(rec)
            elif rec.protocol == "tcp":
                self._observe_tcp(rec)
        except Exception:  # a bug here must not cost a request
            self.failed += 1
            if self.failed == 1:
                log.exception("metrics: observing a %s flow record failed", rec.protocol)

    def _observe_http(self, rec: FlowRecord) -> None:
        key = (rec.client_pod, rec.endpoint_pod, rec.service, str(rec.status), rec.route)
        children = self._http.get(key)
        if children is None:
            values = (*self._peers(rec), str(rec.status), rec.route or "default")
            children = (self.requests.labels(*values), self.duration.labels(*values))
            self._http[key] = children
        children[0].inc()
        children[1].observe(rec.duration * 1000.0)

    def _observe_tcp(self, rec: FlowRecord) -> None:
        key = (rec.client_pod, rec.endpoint_pod, rec.service)
        children = self._tcp.get(key)
        if children is None:
            values = self._peers(rec)
            children = (self.opened.labels(*values), self.closed.labels(*values),
                        self.sent.labels(*values), self.received.labels(*values))
            self._tcp[key] = children
        children[0].inc()
        children[1].inc()
        if rec.bytes_sent:
            children[2].inc(rec.bytes_sent)
        if rec.bytes_received:
            children[3].inc(rec.bytes_received)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)


def metrics_routes(metrics: MeshMetrics) -> list[web.RouteDef]:
    """GET /metrics in the Prometheus text format (what kube-proxy serves on :10249)."""

    async def get_metrics(_request: web.Request) -> web.Response:
        resp = web.Response(body=metrics.exposition())
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    return [web.get("/metrics", get_metrics)]
