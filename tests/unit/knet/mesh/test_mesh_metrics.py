"""The proxy's Prometheus metrics (knet/mesh/metrics.py) and `knet mesh stat`'s numbers
(knet/mesh/stat.py), as data: flow records in, exposition text and golden rows out."""

from __future__ import annotations

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from knet.mesh.metrics import MeshMetrics, workload_of
from knet.mesh.stat import format_table, golden, parse_target, percentile
from knet.proxy.flows import FlowRecord, FlowRing


def rec(status: int, *, duration: float = 0.004, protocol: str = "http", route: str = "r1",
        client: str = "shop/client-7d9f8-abcde", endpoint: str = "shop/web-5c6b7-xyz12",
        service: str = "shop/web", t: float = 1000.0, **kw: object) -> FlowRecord:
    return FlowRecord(time=t, node="node-1", protocol=protocol, client_ip="10.244.1.5",
                      client_port=40000, service=service, service_port=80, status=status,
                      duration=duration, client_pod=client, endpoint_pod=endpoint,
                      route=route, **kw)  # type: ignore[arg-type]


def samples(m: MeshMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for fam in text_string_to_metric_families(m.exposition().decode()):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def pod(name: str, *, owner: tuple[str, str] | None = None, h: str = "") -> dict[str, object]:
    md: dict[str, object] = {"name": name, "namespace": "shop"}
    if owner:
        md["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "controller": True}]
    if h:
        md["labels"] = {"pod-template-hash": h}
    return {"metadata": md}


def test_workload_names_follow_istio() -> None:
    assert workload_of(pod("web-5c6b7-xyz12", owner=("ReplicaSet", "web-5c6b7"),
                           h="5c6b7")) == "web"
    assert workload_of(pod("db-0", owner=("StatefulSet", "db"))) == "db"
    assert workload_of(pod("rs-abc", owner=("ReplicaSet", "rs"))) == "rs"  # a bare ReplicaSet
    assert workload_of(pod("lonely")) == "lonely"


def test_requests_and_durations_by_workload_code_and_route() -> None:
    wl = {"shop/client-7d9f8-abcde": "client", "shop/web-5c6b7-xyz12": "web"}
    m = MeshMetrics(workloads=wl.get)
    ring = FlowRing()
    ring.sinks.append(m.observe)
    for _ in range(7):
        ring.record(rec(200))
    for _ in range(3):
        ring.record(rec(500, duration=0.2))
    ring.record(rec(404, client="", endpoint="", route=""))  # from the host, no route
    got = samples(m)
    base = {"reporter": "waypoint", "request_protocol": "http", "source_workload": "client", "source_workload_namespace": "shop",
            "destination_workload": "web", "destination_workload_namespace": "shop",
            "destination_service": "web.shop.svc.cluster.local", "route": "r1"}
    ok = frozenset({**base, "response_code": "200"}.items())
    bad = frozenset({**base, "response_code": "500"}.items())
    assert got[("istio_requests_total", ok)] == 7
    assert got[("istio_requests_total", bad)] == 3
    assert got[("istio_request_duration_milliseconds_count", bad)] == 3
    assert got[("istio_request_duration_milliseconds_sum", bad)] == pytest.approx(600)
    le5 = frozenset({**base, "response_code": "200", "le": "5.0"}.items())
    le1 = frozenset({**base, "response_code": "200", "le": "1.0"}.items())
    assert got[("istio_request_duration_milliseconds_bucket", le5)] == 7  # 4 ms each
    assert got[("istio_request_duration_milliseconds_bucket", le1)] == 0
    unknown = frozenset({"reporter": "waypoint", "request_protocol": "http",
                         "source_workload": "unknown", "source_workload_namespace": "unknown",
                         "destination_workload": "unknown",
                         "destination_workload_namespace": "unknown",
                         "destination_service": "web.shop.svc.cluster.local",
                         "response_code": "404", "route": "default"}.items())
    assert got[("istio_requests_total", unknown)] == 1


def test_tcp_connections_and_bytes() -> None:
    m = MeshMetrics()
    for _ in range(2):
        m.observe(rec(0, protocol="tcp", bytes_sent=100, bytes_received=1000))
    got = samples(m)
    labels = frozenset({"reporter": "source", "source_workload": "client-7d9f8-abcde",
                        "source_workload_namespace": "shop",
                        "destination_workload": "web-5c6b7-xyz12",
                        "destination_workload_namespace": "shop",
                        "destination_service": "web.shop.svc.cluster.local"}.items())
    assert got[("istio_tcp_connections_opened_total", labels)] == 2
    assert got[("istio_tcp_sent_bytes_total", labels)] == 200
    assert got[("istio_tcp_received_bytes_total", labels)] == 2000


def test_a_failing_observer_never_breaks_recording() -> None:
    def boom(_pod: str) -> str:
        raise RuntimeError("boom")
    m = MeshMetrics(workloads=boom)
    ring = FlowRing()
    ring.sinks.append(m.observe)
    ring.record(rec(200))
    assert len(ring) == 1 and m.failed == 1


def flows(*pairs: tuple[int, float], service: str = "shop/web", t: float = 1000.0,
          endpoint: str = "shop/web-5c6b7-xyz12") -> list[dict[str, object]]:
    return [rec(s, duration=d, service=service, t=t, endpoint=endpoint).to_dict()
            for s, d in pairs]


def test_golden_rows_per_service() -> None:
    data = flows(*[(200, i / 1000) for i in range(1, 91)], *[(500, 0.5)] * 10)
    data += flows((200, 0.001), service="shop/other", t=1.0)   # outside the window
    data += [rec(0, protocol="tcp", service="shop/db").to_dict()]
    rows = golden(data, kind="svc", namespace="shop", window=60, since=900)
    assert [r.name for r in rows] == ["db", "web"]
    web = rows[1]
    j = web.to_json()
    assert j["requests"] == 100 and j["success_rate"] == 0.9
    assert j["rps"] == pytest.approx(100 / 60, abs=1e-3)
    assert j["p50_ms"] == 50.0 and j["p95_ms"] == 500.0 and j["p99_ms"] == 500.0
    assert rows[0].tcp_conns == 1 and rows[0].to_json()["success_rate"] is None
    assert set(j) >= {"name", "requests", "success_rate", "rps", "p50_ms", "p95_ms", "p99_ms"}
    json.dumps(j)
    table = format_table(rows)
    assert table.splitlines()[0].split() == ["NAME", "SUCCESS", "RPS", "LATENCY_P50",
                                             "LATENCY_P95", "LATENCY_P99", "TCP_CONN"]
    assert table.splitlines()[2].split()[:3] == ["web", "90.00%", "1.7rps"]


def test_golden_rows_per_deployment_and_named_targets() -> None:
    data = flows((200, 0.01), (503, 0.01)) + flows((200, 0.01), endpoint="shop/api-1")
    wl = {"shop/web-5c6b7-xyz12": "web"}
    rows = golden(data, kind="deploy", namespace="shop", workload_of=wl.get)
    assert [(r.name, r.requests, r.successes) for r in rows] == [("api-1", 1, 1),
                                                                  ("web", 2, 1)]
    none = golden(data, kind="svc", namespace="shop", name="quiet")
    assert [(r.name, r.requests) for r in none] == [("quiet", 0)]
    assert "-" in format_table(none).splitlines()[1]


def test_targets_and_percentiles() -> None:
    assert parse_target("svc/web") == ("svc", "web")
    assert parse_target("deploy") == ("deploy", "")
    assert parse_target("deployment/web") == ("deploy", "web")
    with pytest.raises(ValueError, match="give svc"):
        parse_target("pod/x")
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 99) == 4.0
