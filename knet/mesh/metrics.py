"""Golden metrics of a node proxy in Istio's standard names, through prometheus-client.

`MeshMetrics.observe(rec)` is a sink of the proxy's `FlowRing` (called once per finished
flow record, after the client pod is resolved): an HTTP record counts in
`istio_requests_total` and `istio_request_duration_milliseconds`; a TCP record in
`istio_tcp_connections_opened_total`/`_closed_total` and `istio_tcp_sent_bytes_total`/
`istio_tcp_received_bytes_total`. Labels are Istio's (reporter, source/destination
workload and namespace, destination_service as an FQDN, request_protocol, response_code)
plus `route` (the mesh route that matched). `metrics_routes(metrics)` serves them at GET /metrics.

Key design choice: the hot path pays one dict lookup and a few additions per record. The
counts live in plain slots per (source, destination, service, code, route) tuple (labels
resolved once, when a tuple is first seen) and `MeshMetrics` is a prometheus-client custom
collector that builds the metric families at scrape time: prometheus-client's own
Counter/Histogram take a lock per update and cost ~9 µs per request here, against ~1 µs.
Each metrics object has its own registry: no globals.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from itertools import accumulate
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
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
# reporter: "waypoint" for the L7 path (Istio ambient's waypoints report so), "source" for
# L4 connections (the client's node proxy, as ztunnel on the client side)
HTTP_LABELS = ("reporter", *_PEERS, "request_protocol", "response_code", "route")
TCP_LABELS = ("reporter", *_PEERS)
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


class _Http:
    """One HTTP label set's counts: requests, duration sum and per-bucket counts."""
    __slots__ = ("buckets", "count", "labels", "sum")

    def __init__(self, labels: tuple[str, ...]) -> None:
        self.labels, self.count, self.sum = labels, 0, 0.0
        self.buckets = [0] * (len(DURATION_BUCKETS_MS) + 1)  # the last: above every bound


class _Tcp:
    __slots__ = ("connections", "labels", "received", "sent")

    def __init__(self, labels: tuple[str, ...]) -> None:
        self.labels, self.connections, self.sent, self.received = labels, 0, 0, 0


class MeshMetrics:
    """The proxy's Prometheus metrics; `observe` is its FlowRing sink, `collect` is what the
    registry asks at scrape time (a custom collector: the hot path never takes a lock)."""

    def __init__(self, *, workloads: WorkloadOf | None = None,
                 registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.workloads: WorkloadOf = workloads or (lambda _pod: None)
        self._http: dict[tuple[object, ...], _Http] = {}
        self._tcp: dict[tuple[object, ...], _Tcp] = {}
        self.failed = 0
        self.registry.register(self)

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
                key = (rec.client_pod, rec.endpoint_pod, rec.service, rec.status, rec.route)
                h = self._http.get(key)
                if h is None:
                    h = self._http[key] = _Http(("waypoint", *self._peers(rec), "http",
                                                 str(rec.status),
                                                 rec.route or "default"))
                ms = rec.duration * 1000.0
                h.count += 1
                h.sum += ms
                h.buckets[bisect_left(DURATION_BUCKETS_MS, ms)] += 1
            elif rec.protocol == "tcp":
                tkey = (rec.client_pod, rec.endpoint_pod, rec.service)
                t = self._tcp.get(tkey)
                if t is None:
                    t = self._tcp[tkey] = _Tcp(("source", *self._peers(rec)))
                t.connections += 1
                t.sent += rec.bytes_sent
                t.received += rec.bytes_received
        except Exception:  # a bug here must not cost a request
            self.failed += 1
            if self.failed == 1:
                log.exception("metrics: observing a %s flow record failed", rec.protocol)

    def collect(self) -> Iterator[Metric]:
        """The metric families, built from the counts at scrape time."""
        requests = CounterMetricFamily("istio_requests", "Requests through the mesh's L7 path",
                                       labels=HTTP_LABELS)
        duration = HistogramMetricFamily("istio_request_duration_milliseconds",
                                         "Request duration through the mesh's L7 path (ms)",
                                         labels=HTTP_LABELS)
        bounds = [*(str(float(b)) for b in DURATION_BUCKETS_MS), "+Inf"]
        for h in list(self._http.values()):
            requests.add_metric(h.labels, h.count)
            cumulative = list(accumulate(h.buckets))
            duration.add_metric(h.labels, list(zip(bounds, cumulative, strict=True)), h.sum)
        tcp = [CounterMetricFamily(f"istio_tcp_{name}", help_, labels=TCP_LABELS)
               for name, help_ in (("connections_opened", "TCP connections through the proxy"),
                                   ("connections_closed", "TCP connections closed"),
                                   ("sent_bytes", "Bytes sent to the destination"),
                                   ("received_bytes", "Bytes received from the destination"))]
        for t in list(self._tcp.values()):
            for fam, value in zip(tcp, (t.connections, t.connections, t.sent, t.received),
                                  strict=True):
                fam.add_metric(t.labels, value)
        yield requests
        yield duration
        yield from tcp

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
