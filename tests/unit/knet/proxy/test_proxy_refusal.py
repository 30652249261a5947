"""Refusals the kube-proxy way through the real Proxier on 127.x addresses: REJECT (no
listener: connect() refused), DROP (a Local policy with endpoints only elsewhere: the SYN
vanishes), serving again the moment endpoints come back, and a live switch of session
affinity and of the algorithm annotation."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from proxy_testkit import TcpBackend, loopback_net, service, start_proxier, tcp_ask, wait_flows


@pytest.fixture
def net() -> str:
    return loopback_net()


@pytest.fixture
async def backends(net: str) -> AsyncIterator[list[TcpBackend]]:
    bs = [await TcpBackend(f"web-{i}", f"{net}{i + 10}").start() for i in range(2)]
    yield bs
    for b in bs:
        await b.stop()


def one_slice(backends: list[TcpBackend], node: str = "node-1") -> dict[str, Any]:
    port = backends[0].port if backends else 1
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "addressType": "IPv4",
            "metadata": {"name": "web-x", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "ports": [{"name": "", "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [b.ip], "nodeName": node,
                           "conditions": {"ready": True, "serving": True},
                           "targetRef": {"kind": "Pod", "namespace": "default",
                                         "name": b.name}} for b in backends]}


async def same_port(net: str, n: int) -> list[TcpBackend]:
    """n backends on one port (one slice port for all), each on its own 127.x address."""
    first = await TcpBackend("web-0", f"{net}20").start()
    out = [first]
    for i in range(1, n):
        b = TcpBackend(f"web-{i}", f"{net}{20 + i}")
        b.server = await asyncio.start_server(b._handle, b.ip, first.port)
        b.port = first.port
        out.append(b)
    return out


async def test_endpoints_go_and_come_back_refused_then_served(net: str) -> None:
    bs = await same_port(net, 1)
    svc = service("web", f"{net}1", [{"port": 80, "targetPort": bs[0].port}])
    p = await start_proxier([svc, one_slice(bs)])
    try:
        assert (await tcp_ask(f"{net}1", 80)).startswith(b"web-0|")
        p.on_endpointslice_update(one_slice(bs), one_slice([]))
        await p.wait_applied()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(f"{net}1", 80)
        p.on_endpointslice_update(one_slice([]), one_slice(bs))
        await p.wait_applied()
        assert (await tcp_ask(f"{net}1", 80)).startswith(b"web-0|")
    finally:
        await p.stop()
        for b in bs:
            await b.stop()


async def test_internal_local_without_a_local_endpoint_drops(net: str) -> None:
    bs = await same_port(net, 1)
    svc = service("web", f"{net}1", [{"port": 80, "targetPort": bs[0].port}],
                  internalTrafficPolicy="Local")
    p = await start_proxier([svc, one_slice(bs, node="node-2")])  # the proxier is node-1's
    try:
        with pytest.raises(TimeoutError):  # no RST, no SYN-ACK: the SYN is dropped
            await asyncio.wait_for(asyncio.open_connection(f"{net}1", 80), 1.5)
        if os.geteuid() == 0:
            flows = await wait_flows(p.ring, 1)
            assert {(f.verdict, f.error) for f in flows} == {
                ("DROPPED", "no local endpoints on node-1")}
        p.on_endpointslice_update(one_slice(bs, node="node-2"), one_slice(bs))
        await p.wait_applied()  # the endpoint is now on this node: the filter comes off
        assert (await tcp_ask(f"{net}1", 80)).startswith(b"web-0|")
    finally:
        await p.stop()
        for b in bs:
            await b.stop()


async def test_session_affinity_switched_both_ways_on_a_live_service(net: str) -> None:
    bs = await same_port(net, 3)
    svc = service("web", f"{net}1", [{"port": 80, "targetPort": bs[0].port}])
    p = await start_proxier([svc, one_slice(bs)])

    async def who(n: int) -> set[bytes]:
        return {(await tcp_ask(f"{net}1", 80)).split(b"|")[0] for _ in range(n)}
    try:
        assert len(await who(6)) == 3
        sticky = {**svc, "spec": {**svc["spec"], "sessionAffinity": "ClientIP"}}
        p.on_service_update(svc, sticky)
        await p.wait_applied()
        assert len(await who(6)) == 1
        p.on_service_update(sticky, svc)
        await p.wait_applied()
        assert len(await who(6)) == 3
    finally:
        await p.stop()
        for b in bs:
            await b.stop()


async def test_algorithm_annotation_applies_live(net: str) -> None:
    bs = await same_port(net, 3)
    svc = service("web", f"{net}1", [{"port": 80, "targetPort": bs[0].port}])
    p = await start_proxier([svc, one_slice(bs)], algorithm="random")
    try:
        await tcp_ask(f"{net}1", 80)
        hashed = {**svc, "metadata": {**svc["metadata"],
                                      "annotations": {"knet.dev/proxy-algorithm": "source-hash"}}}
        p.on_service_update(svc, hashed)
        await p.wait_applied()
        answers = {(await tcp_ask(f"{net}1", 80)).split(b"|")[0] for _ in range(6)}
        assert len(answers) == 1  # one client address: one bucket
        flows = await wait_flows(p.ring, 7)
        assert flows[0].algorithm == "random" and flows[0].reason.startswith("random ")
        assert {f.algorithm for f in flows[1:]} == {"source-hash"}
        assert len({f.reason for f in flows[1:]}) == 1
    finally:
        await p.stop()
        for b in bs:
            await b.stop()


async def test_a_refused_port_the_mesh_routes_is_served_again(net: str) -> None:
    # a port refused for lack of endpoints that the mesh then enrolls (it may route requests
    # elsewhere) gets its listener back: the mesh's relisten pass nudges the proxier
    from knet.mesh.source import MeshState, relisten
    from knet.mesh.table import compile_table

    svc = service("reviews", f"{net}1", [{"name": "http", "port": 80, "targetPort": 9080}])
    p = await start_proxier([svc])
    state = MeshState()
    p.ctx.mesh = state
    try:
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(f"{net}1", 80)
        state.table = compile_table(p.table, namespace_labels={
            "default": {"istio.io/dataplane-mode": "ambient"}})
        await relisten(p, state)
        await p.wait_applied()
        r, w = await asyncio.open_connection(f"{net}1", 80)
        w.write(b"GET / HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n")
        head = await asyncio.wait_for(r.read(), 3)
        w.close()
        assert head.startswith(b"HTTP/1.1 503 "), head  # the L7 path answers: no upstream
    finally:
        await p.stop()
