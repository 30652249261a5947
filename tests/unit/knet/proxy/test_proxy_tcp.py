"""The TCP data path with real sockets on 127.x addresses and real backends, on uvloop:
round-robin, affinity, half-close, refusal, re-pick after a dial failure, a silent backend."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator

import pytest
from proxy_testkit import (
    TcpBackend,
    endpoint_slice,
    free_port,
    loopback_net,
    service,
    start_proxier,
    tcp_ask,
    wait_flows,
)

from knet.proxy.flows import FlowRing


@pytest.fixture
def net() -> str:
    return loopback_net()


@pytest.fixture
async def backends(net: str) -> AsyncIterator[list[TcpBackend]]:
    bs = [await TcpBackend(f"web-{i}", f"{net}{i + 10}").start() for i in range(3)]
    yield bs
    for b in bs:
        await b.stop()


def web(net: str, backends: list[TcpBackend], **spec: object) -> list[dict[str, object]]:
    # every backend listens on its own port; give each its own slice port via one port name
    eps = [(b.ip, b.name) for b in backends]
    objs: list[dict[str, object]] = [service("web", f"{net}1", [{"name": "p", "port": 8080,
                                                                  "targetPort": "p"}], **spec)]
    for b in backends:
        sl = endpoint_slice("web", [{"name": "p", "port": b.port, "protocol": "TCP"}],
                            [(b.ip, b.name)])
        sl["metadata"]["name"] = f"web-{b.name}"
        objs.append(sl)
    assert eps
    return objs


async def test_round_robin_over_three_backends(net: str, backends: list[TcpBackend]) -> None:
    p = await start_proxier(web(net, backends))
    try:
        answers = [(await tcp_ask(f"{net}1", 8080)).split(b"|")[0].decode() for _ in range(9)]
        assert answers == ["web-0", "web-1", "web-2"] * 3
        flows = await wait_flows(p.ring, 9)
        assert [f.reason for f in flows] == ["rr#0", "rr#1", "rr#2"] * 3
        assert {f.verdict for f in flows} == {"FORWARDED"}
        f = flows[0]
        assert (f.service, f.service_port, f.endpoint_pod, f.protocol) == (
            "default/web", 8080, "default/web-0", "tcp")
        assert (f.bytes_sent, f.bytes_received) == (2, len(b"web-0|hi"))
    finally:
        await p.stop()


async def test_client_ip_affinity_pins(net: str, backends: list[TcpBackend]) -> None:
    p = await start_proxier(web(net, backends, sessionAffinity="ClientIP"))
    try:
        answers = {(await tcp_ask(f"{net}1", 8080)).split(b"|")[0] for _ in range(6)}
        assert len(answers) == 1
        flows = await wait_flows(p.ring, 6)
        assert [f.reason for f in flows] == ["rr#0"] + ["affinity-hit"] * 5
    finally:
        await p.stop()


async def test_half_close_is_passed_through(net: str) -> None:
    b = await TcpBackend("sum", f"{net}20", mode="sum").start()
    objs = [service("s", f"{net}1", [{"port": 9000, "targetPort": b.port}]),
            endpoint_slice("s", [{"port": b.port, "protocol": "TCP"}], [(b.ip, "sum-1")])]
    p = await start_proxier(objs)
    try:
        r, w = await asyncio.open_connection(f"{net}1", 9000)
        w.write(b"x" * 300_000)
        w.write_eof()  # we are done sending, but still want the answer
        answer = await asyncio.wait_for(r.read(), 3)
        assert answer == b"sum|300000"
        w.close()
        (flow,) = await wait_flows(p.ring, 1)
        assert (flow.bytes_sent, flow.verdict) == (300_000, "FORWARDED")
    finally:
        await p.stop()
        await b.stop()


async def test_no_endpoints_refuses_the_connect_like_kube_proxy_reject(net: str) -> None:
    # kube-proxy REJECTs: the SYN gets a RST, connect() itself fails (curl exit 7), no accept
    objs = [service("empty", f"{net}1", [{"port": 7000}])]
    p = await start_proxier(objs)
    try:
        with pytest.raises(ConnectionRefusedError):  # warm up (the loop's own fds)
            await asyncio.open_connection(f"{net}1", 7000)
        fds = len(os.listdir("/proc/self/fd"))
        for _ in range(200):  # a flood costs no fd
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection(f"{net}1", 7000)
        assert len(os.listdir("/proc/self/fd")) <= fds
        if os.geteuid() == 0:  # the refusals are seen on a raw socket (needs CAP_NET_RAW)
            flows = await wait_flows(p.ring, 201)
            assert {(f.verdict, f.service, f.endpoint_ip) for f in flows} == {
                ("REFUSED", "default/empty", "")}
    finally:
        await p.stop()


async def test_dial_failure_repicks_another_endpoint(net: str,
                                                     backends: list[TcpBackend]) -> None:
    dead_ip = f"{net}9"
    dead_port = free_port(dead_ip)  # nothing listens there: connection refused
    objs = web(net, backends[:1])
    dead = endpoint_slice("web", [{"name": "p", "port": dead_port, "protocol": "TCP"}],
                          [(dead_ip, "dead-1")])
    dead["metadata"]["name"] = "web-dead"
    p = await start_proxier([*objs, dead])
    try:
        answers = [(await tcp_ask(f"{net}1", 8080)).split(b"|")[0] for _ in range(4)]
        assert answers == [b"web-0"] * 4
        flows = await wait_flows(p.ring, 4)
        # sorted order puts the dead one (.9) first; every turn of it becomes a retry
        assert [(f.endpoint_pod, f.reason, f.retries) for f in flows] == [
            ("default/web-0", "retry", 1)] * 4
    finally:
        await p.stop()


async def test_all_dials_fail_gives_error_flow(net: str) -> None:
    dead_ip = f"{net}9"
    dead_port = free_port(dead_ip)
    objs = [service("d", f"{net}1", [{"port": 7100, "targetPort": dead_port}]),
            endpoint_slice("d", [{"port": dead_port, "protocol": "TCP"}], [(dead_ip, "d-1")])]
    p = await start_proxier(objs)
    try:
        with pytest.raises(ConnectionError):
            data = await tcp_ask(f"{net}1", 7100)
            if not data:
                raise ConnectionResetError("closed")
        (flow,) = await wait_flows(p.ring, 1)
        assert (flow.verdict, flow.retries, flow.endpoint_pod) == ("ERROR", 3, "default/d-1")
        assert "no endpoint answered after 4 tries" in flow.error
    finally:
        await p.stop()


async def test_silent_backend_flow_recorded_after_client_gives_up(net: str) -> None:
    b = await TcpBackend("silent", f"{net}21", mode="silent").start()
    objs = [service("s", f"{net}1", [{"port": 7200, "targetPort": b.port}]),
            endpoint_slice("s", [{"port": b.port, "protocol": "TCP"}], [(b.ip, "silent-1")])]
    p = await start_proxier(objs, half_close_timeout=0.3)
    try:
        with pytest.raises(TimeoutError):
            await tcp_ask(f"{net}1", 7200, b"GET / HTTP/1.0\r\n\r\n", timeout=0.3)
        (flow,) = await wait_flows(p.ring, 1)
        assert (flow.verdict, flow.endpoint_pod, flow.bytes_sent, flow.bytes_received) == (
            "TIMEOUT", "default/silent-1", 18, 0)
    finally:
        await p.stop()
        await b.stop()


async def test_endpoint_removed_gets_nothing_and_others_keep_serving(
        net: str, backends: list[TcpBackend]) -> None:
    objs = web(net, backends)
    p = await start_proxier(objs)
    try:
        p.on_endpointslice_delete(objs[2])  # web-1 goes away
        await p.wait_applied()
        answers = [(await tcp_ask(f"{net}1", 8080)).split(b"|")[0] for _ in range(4)]
        assert answers == [b"web-0", b"web-2"] * 2
        assert backends[1].connections == 0
    finally:
        await p.stop()


async def test_service_deleted_closes_listener(net: str, backends: list[TcpBackend]) -> None:
    objs = web(net, backends)
    p = await start_proxier(objs, flow_ring=FlowRing(size=5))
    try:
        assert (await tcp_ask(f"{net}1", 8080)).startswith(b"web-0|")
        p.on_service_delete(objs[0])
        await p.wait_applied()
        assert p.listeners == {}
        with pytest.raises(ConnectionRefusedError):
            await tcp_ask(f"{net}1", 8080)
    finally:
        await p.stop()


async def test_node_port_on_every_node_ip(net: str, backends: list[TcpBackend]) -> None:
    node_ips = [f"{net}100", f"{net}101"]
    objs = web(net, backends, type="NodePort")
    objs[0]["spec"]["ports"][0]["nodePort"] = 31080  # type: ignore[index]
    p = await start_proxier(objs, node_ips=node_ips)
    try:
        answers = [(await tcp_ask(ip, 31080)).split(b"|")[0] for ip in node_ips]
        answers.append((await tcp_ask(f"{net}1", 8080)).split(b"|")[0])
        assert answers == [b"web-0", b"web-1", b"web-2"]
    finally:
        await p.stop()


async def test_two_services_one_node_port_first_keeps_it(net: str,
                                                         backends: list[TcpBackend]) -> None:
    a = web(net, backends[:1], type="NodePort")
    a[0]["spec"]["ports"][0]["nodePort"] = 31090  # type: ignore[index]
    b = web(net, backends[1:2], type="NodePort")
    b[0]["metadata"]["name"] = "zz-other"  # type: ignore[index]
    b[0]["spec"]["clusterIP"] = f"{net}2"  # type: ignore[index]
    b[0]["spec"]["ports"][0]["nodePort"] = 31090  # type: ignore[index]
    b[1]["metadata"]["labels"]["kubernetes.io/service-name"] = "zz-other"  # type: ignore[index]
    b[1]["metadata"]["name"] = "zz-other-1"  # type: ignore[index]
    p = await start_proxier([*a, *b], node_ips=[f"{net}100"])
    try:
        assert (await tcp_ask(f"{net}100", 31090)).startswith(b"web-0|")
        assert (await tcp_ask(f"{net}2", 8080)).startswith(b"web-1|")  # its ClusterIP works
        assert sorted(lk[1:] for lk in p.listeners) == [
            (f"{net}1", 8080), (f"{net}100", 31090), (f"{net}2", 8080)]
    finally:
        await p.stop()


async def test_port_change_moves_the_listener(net: str, backends: list[TcpBackend]) -> None:
    objs = web(net, backends)
    p = await start_proxier(objs)
    try:
        moved = web(net, backends)[0]
        moved["spec"]["ports"][0]["port"] = 8081  # type: ignore[index]
        p.on_service_update(objs[0], moved)
        await p.wait_applied()
        assert (await tcp_ask(f"{net}1", 8081)).startswith(b"web-")
        with pytest.raises(ConnectionRefusedError):
            await tcp_ask(f"{net}1", 8080)
    finally:
        await p.stop()


async def test_bulk_both_ways_byte_exact_with_a_slow_reader(net: str) -> None:
    b = await TcpBackend("mirror", f"{net}22", mode="mirror").start()
    objs = [service("m", f"{net}1", [{"port": 7300, "targetPort": b.port}]),
            endpoint_slice("m", [{"port": b.port, "protocol": "TCP"}], [(b.ip, "mirror-1")])]
    p = await start_proxier(objs)
    payload = os.urandom(12 << 20)
    try:
        r, w = await asyncio.open_connection(f"{net}1", 7300)

        async def send() -> None:
            for i in range(0, len(payload), 1 << 20):
                w.write(payload[i:i + (1 << 20)])
                await w.drain()
            w.write_eof()

        sender = asyncio.create_task(send())
        got = bytearray()
        while len(got) < len(payload):
            chunk = await asyncio.wait_for(r.read(1 << 16), 10)
            assert chunk, f"stream ended after {len(got)} bytes"
            got += chunk
            if len(got) < (2 << 20):
                await asyncio.sleep(0.002)  # a slow reader first: back-pressure all the way
        await sender
        assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
        w.close()
    finally:
        await p.stop()
        await b.stop()
