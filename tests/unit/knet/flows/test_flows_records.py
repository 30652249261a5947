"""`knet flows` logic against real HTTP sources: two kube-proxies serving their own FlowRing
routes on unix sockets (as `knet proxy --flows-socket` does) and a DNS query log over TCP,
merged, filtered and formatted."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from flows_testkit import make_view

from control.api.ca import ClusterCA, Identity, client_context, server_context
from control.api.tls import reader_context
from knet.flows import records
from knet.flows.cluster import proxy_flows
from knet.flows.records import FlowFilter, format_flow
from knet.proxy.flows import FlowRecord, FlowRing, flows_routes

T0 = 1_700_000_000.0


def rec(t: float, node: str, port: int, ep: str, pod: str, **kw: Any) -> FlowRecord:
    return FlowRecord(time=T0 + t, node=node, protocol=kw.pop("protocol", "tcp"),
                      client_ip="10.244.1.3", client_port=port, service="default/web",
                      service_port=80, endpoint_ip=ep, endpoint_port=8080, endpoint_pod=pod,
                      reason=kw.pop("reason", "rr#0"), bytes_sent=70, bytes_received=400,
                      duration=0.0031, **kw)


async def _server(app: web.Application, tls: ssl.SSLContext) -> TestServer:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(ssl=tls)
    return server


def _mtls(state: Path, name: str, **names: list[str]) -> ssl.SSLContext:
    """A serving context of the cluster CA in `state` that requires client certificates."""
    ca = ClusterCA.ensure(state)
    crt, key = ca.ensure_pair(name, Identity(name), server=True, **names)
    return server_context(crt, key, client_ca=ca.cert_path, require_client=True)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[Any, FlowRing, FlowRing,
                                                         list[dict[str, Any]]]]:
    rings = FlowRing(), FlowRing()
    dns_rows: list[dict[str, Any]] = []
    runners, sockets = [], []
    for i, ring in enumerate(rings, 1):
        app = web.Application()
        app.add_routes(flows_routes(ring))
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
        await runner.setup()
        sockets.append(str(tmp_path / f"node-{i}.sock"))
        await web.UnixSite(runner, sockets[-1]).start()
        runners.append(runner)

    async def dns_flows(request: web.Request) -> web.Response:
        return web.json_response(dns_rows)

    dns_app = web.Application()
    dns_app.router.add_get("/flows", dns_flows)
    dns = await _server(dns_app, _mtls(tmp_path, "coredns", dns=[records.DNS_FLOWS_SERVER_NAME]))
    view = make_view((sockets[0], sockets[1]))
    view.tls = reader_context(tmp_path)         # knet-flows, as ClusterView.load makes it
    records.DNS_FLOWS_PORT = dns.port  # the DNS pod's port, here on loopback
    view.pods["kube-system/coredns-x"].ip = "127.0.0.1"
    try:
        yield view, rings[0], rings[1], dns_rows
    finally:
        records.DNS_FLOWS_PORT = 9153
        await dns.close()
        for runner in runners:
            await runner.cleanup()


async def test_snapshot_merges_nodes_and_dns_in_time_order(cluster: Any) -> None:
    view, ring1, ring2, dns_rows = cluster
    ring1.record(rec(0.3, "node-1", 40001, "10.244.1.4", "default/web-a"))
    ring2.record(rec(0.1, "node-2", 40002, "10.244.2.2", "default/web-b", reason="rr#1"))
    dns_rows.append({"time": T0 + 0.2, "client": "10.244.1.1:5353", "proto": "udp",
                     "qname": "web.default.svc.cluster.local.", "qtype": "A",
                     "rcode": "NOERROR", "answer": "A 10.96.0.20"})
    errors: list[str] = []
    flows = await records.snapshot(view, flt=FlowFilter(), errors=errors)
    assert errors == []
    assert [(f["kind"], f["time"] - T0) for f in flows] == [
        ("proxy", pytest.approx(0.1)), ("dns", pytest.approx(0.2)), ("proxy", pytest.approx(0.3))]
    assert flows[1]["client_pod"] == "node-1 cni0" and flows[1]["node"] == "node-1"
    assert flows[0]["client_pod"] == "default/client"   # named by the view


async def test_without_the_reader_certificate_the_dns_log_refuses(cluster: Any,
                                                                  tmp_path: Path) -> None:
    """The DNS query log answers only a client certificate of the cluster CA; the proxies'
    unix sockets (0600, in the 0700 state dir) need none."""
    view, ring1, _, dns_rows = cluster
    ring1.record(rec(0.3, "node-1", 40001, "10.244.1.4", "default/web-a"))
    dns_rows.append({"time": T0, "client": "10.244.1.1:5353", "qname": "x."})
    view.tls = client_context(tmp_path / "ca.crt")      # trusts the CA, presents nothing
    errors: list[str] = []
    flows = await records.snapshot(view, flt=FlowFilter(), errors=errors)
    assert [f["kind"] for f in flows] == ["proxy"]
    assert len(errors) == 1 and errors[0].startswith("dns ") and \
        "its flows are missing" in errors[0]


@pytest.mark.parametrize("flt, ports", [
    (FlowFilter(to_pod="web-a"), [1]),
    (FlowFilter(pod="default/web-b"), [2]),
    (FlowFilter(from_pod="client"), [1, 2, 3]),
    (FlowFilter(node="node-2"), [2]),
    (FlowFilter(verdict="refused"), [3]),
    (FlowFilter(service="web", protocol="udp"), []),
    (FlowFilter(namespace="kube-system"), []),
    (FlowFilter(since=T0 + 1.5), [2, 3]),
])
async def test_filters(cluster: Any, flt: FlowFilter, ports: list[int]) -> None:
    view, ring1, ring2, _ = cluster
    ring1.record(rec(1, "node-1", 1, "10.244.1.4", "default/web-a"))
    ring2.record(rec(2, "node-2", 2, "10.244.2.2", "default/web-b"))
    ring1.record(rec(3, "node-1", 3, "", "", verdict="REFUSED", reason=""))
    flows = await records.snapshot(view, flt=flt, errors=[])
    assert [f["client_port"] for f in flows] == ports


async def test_last_n_and_unreachable_source_reported(cluster: Any) -> None:
    view, ring1, _, _ = cluster
    for i in range(5):
        ring1.record(rec(i, "node-1", 100 + i, "10.244.1.4", "default/web-a"))
    view.nodes["node-2"].flows_socket = "/nonexistent/node-2.sock"
    errors: list[str] = []
    flows = await records.snapshot(view, flt=FlowFilter(), last=2, errors=errors)
    assert [f["client_port"] for f in flows] == [103, 104]
    assert len(errors) == 1 and errors[0].startswith(
        "proxy node-2: unix:/nonexistent/node-2.sock unreachable")
    assert "knet status" in errors[0]


async def test_follow_yields_new_records_from_every_node(cluster: Any) -> None:
    view, ring1, ring2, _ = cluster
    got: list[dict[str, Any]] = []

    async def consume() -> None:
        async for f in records.follow(view, flt=FlowFilter(service="web"), errors=print):
            got.append(f)
            if len(got) == 2:
                return

    task = asyncio.create_task(consume())
    for _ in range(100):   # until both followers are attached
        if ring1._followers and ring2._followers:
            break
        await asyncio.sleep(0.02)
    ring2.record(rec(1, "node-2", 7, "10.244.2.2", "default/web-b"))
    ring1.record(rec(2, "node-1", 8, "10.244.1.4", "default/web-a"))
    await asyncio.wait_for(task, 5)
    assert sorted(f["client_port"] for f in got) == [7, 8]


def test_one_line_form() -> None:
    src = records.Source("proxy", "node-1", "http://x/flows", "node-1")
    f = records.normalize(rec(0, "node-1", 51122, "10.244.2.2", "default/web-b",
                              reason="rr#2").to_dict(), src, make_view())
    line = format_flow(f)
    clock = time.strftime("%H:%M:%S", time.localtime(T0))
    assert line == (f"{clock}.000 default/client (10.244.1.3:51122) -> svc default/web:80 -> "
                    "default/web-b (10.244.2.2:8080) FORWARDED tcp rr#2 bytes 70/400 3.1ms "
                    "[node-1]")
    refused = records.normalize(rec(0, "node-1", 5, "", "", verdict="REFUSED", reason="",
                                    error="no endpoints").to_dict(), src, make_view())
    assert format_flow(refused).endswith("-> svc default/web:80 REFUSED tcp bytes 70/400 3.1ms "
                                         "(no endpoints) [node-1]")
    assert json.loads(json.dumps(f))["endpoint_pod"] == "default/web-b"
    hashed = records.normalize(rec(0, "node-1", 5, "10.244.2.2", "default/web-b",
                                   reason="sh bucket 17", algorithm="source-hash").to_dict(),
                               src, make_view())
    assert "FORWARDED tcp source-hash sh bucket 17 bytes" in format_flow(hashed)


async def test_proxy_flows_reads_one_node_socket_as_trace_does(cluster: Any) -> None:
    view, ring1, ring2, _ = cluster
    ring1.record(rec(0, "node-1", 1, "10.244.1.4", "default/web-a"))
    ring1.record(rec(5, "node-1", 2, "10.244.1.4", "default/web-a"))
    ring2.record(rec(6, "node-2", 3, "10.244.2.2", "default/web-b"))
    rows = await asyncio.to_thread(proxy_flows, view.nodes["node-1"], since=T0 + 1)
    assert [r["client_port"] for r in rows] == [2]
    view.nodes["node-2"].flows_socket = "/nonexistent/node-2.sock"
    with pytest.raises(OSError):
        await asyncio.to_thread(proxy_flows, view.nodes["node-2"])


def test_one_line_form_says_mtls_identities_and_authz() -> None:
    src = records.Source("proxy", "node-1", "http://x/flows", "node-1")
    meshed = rec(0, "node-1", 51122, "10.244.2.2", "default/web-b", reason="rr#2")
    meshed.mtls, meshed.authz, meshed.authz_policy = True, "ALLOW", "default/viewer"
    meshed.source_identity = "spiffe://cluster.local/ns/default/sa/client"
    meshed.destination_identity = "spiffe://cluster.local/ns/default/sa/web"
    line = format_flow(records.normalize(meshed.to_dict(), src, make_view()))
    assert line.endswith("3.1ms mtls spiffe://cluster.local/ns/default/sa/client -> "
                         "spiffe://cluster.local/ns/default/sa/web authz ALLOW default/viewer "
                         "[node-1]")
    plain = rec(0, "node-1", 5, "10.244.2.2", "default/web-b")
    plain.destination_identity = "spiffe://cluster.local/ns/default/sa/web"
    assert "plaintext - -> spiffe://cluster.local/ns/default/sa/web" in format_flow(
        records.normalize(plain.to_dict(), src, make_view()))
    assert " mtls" not in format_flow(records.normalize(
        rec(0, "node-1", 5, "10.244.2.2", "default/web-b").to_dict(), src, make_view()))
