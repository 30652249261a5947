"""`knet flows` logic against real HTTP sources: two agents serving the proxy's own FlowRing
routes and a DNS query log, merged, filtered and formatted."""

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
    servers = []
    for ring in rings:
        app = web.Application()
        app.add_routes(flows_routes(ring))
        servers.append(await _server(app, _mtls(tmp_path, f"kubelet-{len(servers)}",
                                                ips=["127.0.0.1"])))

    async def dns_flows(request: web.Request) -> web.Response:
        return web.json_response(dns_rows)

    dns_app = web.Application()
    dns_app.router.add_get("/flows", dns_flows)
    servers.append(await _server(dns_app, _mtls(tmp_path, "coredns",
                                                dns=[records.DNS_FLOWS_SERVER_NAME])))
    view = make_view(tuple(str(s.make_url("")).rstrip("/") for s in servers[:2]))  # type: ignore[arg-type]
    view.tls = reader_context(tmp_path)         # knet-flows, as ClusterView.load makes it
    records.DNS_FLOWS_PORT = servers[2].port  # the DNS pod's port, here on loopback
    view.pods["kube-system/coredns-x"].ip = "127.0.0.1"
    try:
        yield view, rings[0], rings[1], dns_rows
    finally:
        records.DNS_FLOWS_PORT = 9153
        for s in servers:
            await s.close()


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


async def test_without_the_reader_certificate_every_source_refuses(cluster: Any,
                                                                   tmp_path: Path) -> None:
    view, ring1, _, dns_rows = cluster
    ring1.record(rec(0.3, "node-1", 40001, "10.244.1.4", "default/web-a"))
    dns_rows.append({"time": T0, "client": "10.244.1.1:5353", "qname": "x."})
    view.tls = client_context(tmp_path / "ca.crt")      # trusts the CA, presents nothing
    errors: list[str] = []
    assert await records.snapshot(view, flt=FlowFilter(), errors=errors) == []
    assert len(errors) == 3 and all("its flows are missing" in e for e in errors)


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
    view.nodes["node-2"].agent_url = "http://127.0.0.1:1"
    errors: list[str] = []
    flows = await records.snapshot(view, flt=FlowFilter(), last=2, errors=errors)
    assert [f["client_port"] for f in flows] == [103, 104]
    assert len(errors) == 1 and errors[0].startswith("proxy node-2: http://127.0.0.1:1/flows "
                                                     "unreachable")


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
