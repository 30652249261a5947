"""The flow ring and its HTTP routes: bounded, filtered by time, followed live."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from knet.proxy.flows import FlowRecord, FlowRing, flows_app, flows_routes, parse_since


def rec(i: int, t: float = 1000.0) -> FlowRecord:
    return FlowRecord(time=t + i, node="node-1", protocol="tcp", client_ip="10.244.1.4",
                      client_port=40000 + i, service="default/web", service_port=80,
                      endpoint_ip="10.244.2.3", endpoint_port=8080, reason=f"rr#{i % 3}")


def test_ring_is_bounded_and_keeps_the_newest() -> None:
    ring = FlowRing(size=3)
    for i in range(5):
        ring.record(rec(i))
    assert len(ring) == 3
    assert [r.client_port for r in ring.records()] == [40002, 40003, 40004]


def test_since_and_limit() -> None:
    ring = FlowRing()
    for i in range(10):
        ring.record(rec(i))
    assert [r.client_port for r in ring.records(since=1007)] == [40007, 40008, 40009]
    assert [r.client_port for r in ring.records(limit=2)] == [40008, 40009]


def test_resolver_names_the_client_pod() -> None:
    ring = FlowRing(resolver={"10.244.1.4": "default/client-1"}.get)
    ring.record(rec(0))
    assert ring.records()[0].client_pod == "default/client-1"


def test_to_dict_has_every_field() -> None:
    d = rec(1).to_dict()
    for field in ("time", "node", "protocol", "client_ip", "client_port", "client_pod",
                  "service", "service_port", "endpoint_ip", "endpoint_port", "endpoint_pod",
                  "reason", "bytes_sent", "bytes_received", "duration", "verdict", "method",
                  "path", "status", "latency", "retries"):
        assert field in d
    assert json.loads(json.dumps(d))["reason"] == "rr#1"


def test_parse_since() -> None:
    assert parse_since("30s", now=1000) == 970
    assert parse_since("5m", now=1000) == 700
    assert parse_since("500ms", now=1000) == pytest.approx(999.5)
    assert parse_since("1700000000.5") == 1700000000.5
    with pytest.raises(ValueError, match="since='yesterday'"):
        parse_since("yesterday")


async def test_follow_sees_new_records() -> None:
    ring = FlowRing()
    ring.record(rec(0))
    seen: list[int] = []

    async def follower() -> None:
        async for r in ring.follow():
            seen.append(r.client_port)
            if len(seen) == 2:
                return

    task = asyncio.create_task(follower())
    await asyncio.sleep(0.01)
    ring.record(rec(1))
    ring.record(rec(2))
    await asyncio.wait_for(task, 1)
    assert seen == [40001, 40002]


async def test_routes_list_and_follow() -> None:
    ring = FlowRing()
    for i in range(5):
        ring.record(rec(i))
    app = web.Application()
    app.add_routes(flows_routes(ring))
    async with TestClient(TestServer(app)) as client:
        r = await client.get("/flows", params={"since": "1003", "limit": "10"})
        assert [f["client_port"] for f in await r.json()] == [40003, 40004]
        r = await client.get("/flows", params={"since": "soon"})
        assert r.status == 400 and "since='soon'" in await r.text()
        r = await client.get("/flows", params={"follow": "1"})
        assert r.headers["Content-Type"] == "application/x-ndjson"
        await asyncio.sleep(0.05)
        ring.record(rec(7))
        line = await asyncio.wait_for(r.content.readline(), 2)
        assert json.loads(line)["client_port"] == 40007
        r.close()


async def test_sub_app_mounts() -> None:
    ring = FlowRing()
    ring.record(rec(0))
    app = web.Application()
    app.add_subapp("/proxy", flows_app(ring))
    async with TestClient(TestServer(app)) as client:
        r = await client.get("/proxy/flows")
        assert len(await r.json()) == 1
