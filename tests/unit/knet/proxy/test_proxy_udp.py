"""The UDP data path with real sockets on 127.x: echo through a ClusterIP, replies from the
ClusterIP:port, a flow per client, the idle timeout, garbage, no endpoints."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator

import pytest
from proxy_testkit import (
    UdpBackend,
    UdpClient,
    endpoint_slice,
    loopback_net,
    service,
    start_proxier,
    wait_flows,
)


@pytest.fixture
def net() -> str:
    return loopback_net()


@pytest.fixture
async def backends(net: str) -> AsyncIterator[list[UdpBackend]]:
    bs = [await UdpBackend(f"echo-{i}", f"{net}{i + 10}").start() for i in range(3)]
    yield bs
    for b in bs:
        b.stop()


def echo(net: str, backends: list[UdpBackend]) -> list[dict[str, object]]:
    objs: list[dict[str, object]] = [service("echo", f"{net}1", [
        {"name": "udp", "port": 5300, "protocol": "UDP", "targetPort": "udp"}])]
    for b in backends:
        sl = endpoint_slice("echo", [{"name": "udp", "port": b.port, "protocol": "UDP"}],
                            [(b.ip, b.name)])
        sl["metadata"]["name"] = f"echo-{b.name}"
        objs.append(sl)
    return objs


async def test_echo_through_cluster_ip_from_cluster_ip(net: str,
                                                       backends: list[UdpBackend]) -> None:
    p = await start_proxier(echo(net, backends), udp_idle_timeout=5)
    c = await UdpClient.open(f"{net}200")
    try:
        for i in range(3):
            data, src = await c.ask(b"ping%d" % i, (f"{net}1", 5300))
            assert data == b"echo-0|ping%d" % i  # one flow: one endpoint
            assert src == (f"{net}1", 5300)
    finally:
        c.close()
        await p.stop()
    (flow,) = await wait_flows(p.ring, 1)
    assert (flow.protocol, flow.endpoint_pod, flow.reason, flow.verdict) == (
        "udp", "default/echo-0", "rr#0", "FORWARDED")
    assert (flow.bytes_sent, flow.bytes_received) == (15, 15 + 3 * len(b"echo-0|"))


async def test_flow_to_a_removed_endpoint_ends_at_once(net: str,
                                                       backends: list[UdpBackend]) -> None:
    # kube-proxy deletes the conntrack entries of a removed UDP endpoint: a client that keeps
    # sending (never idle) from the same port moves to a live endpoint at once
    objs = echo(net, backends)
    p = await start_proxier(objs, udp_idle_timeout=30)
    c = await UdpClient.open(f"{net}200")
    try:
        data, _ = await c.ask(b"a", (f"{net}1", 5300))
        assert data == b"echo-0|a"
        p.on_endpointslice_delete(objs[1])  # echo-0's slice
        await p.wait_applied()
        data, _ = await c.ask(b"b", (f"{net}1", 5300))
        assert data == b"echo-1|b"
        flows = await wait_flows(p.ring, 1)
        assert [(f.endpoint_pod, f.verdict) for f in flows] == [("default/echo-0", "FORWARDED")]
    finally:
        c.close()
        await p.stop()


async def test_two_clients_get_their_own_flows_and_replies(net: str,
                                                           backends: list[UdpBackend]) -> None:
    p = await start_proxier(echo(net, backends), udp_idle_timeout=5)
    a, b = await UdpClient.open(f"{net}200"), await UdpClient.open(f"{net}201")
    try:
        ra, _ = await a.ask(b"from-a", (f"{net}1", 5300))
        rb, _ = await b.ask(b"from-b", (f"{net}1", 5300))
        assert (ra, rb) == (b"echo-0|from-a", b"echo-1|from-b")
        ra, _ = await a.ask(b"again-a", (f"{net}1", 5300))
        assert ra == b"echo-0|again-a"
        assert a.got.empty() and b.got.empty()
    finally:
        a.close()
        b.close()
        await p.stop()


async def test_idle_flow_ends_and_next_datagram_is_a_new_flow(
        net: str, backends: list[UdpBackend]) -> None:
    p = await start_proxier(echo(net, backends), udp_idle_timeout=0.2)
    c = await UdpClient.open(f"{net}200")
    try:
        first, _ = await c.ask(b"one", (f"{net}1", 5300))
        flows = await wait_flows(p.ring, 1, timeout=2)
        assert len(flows) == 1 and flows[0].duration < 0.2
        second, _ = await c.ask(b"two", (f"{net}1", 5300))
        assert (first, second) == (b"echo-0|one", b"echo-1|two")
    finally:
        c.close()
        await p.stop()


async def test_garbage_does_not_break_other_clients(net: str,
                                                    backends: list[UdpBackend]) -> None:
    p = await start_proxier(echo(net, backends), udp_idle_timeout=5)
    bad, good = await UdpClient.open(f"{net}200"), await UdpClient.open(f"{net}201")
    try:
        assert bad.transport is not None
        for junk in (b"", os.urandom(60000), b"\xff" * 3, os.urandom(512)):
            bad.transport.sendto(junk, (f"{net}1", 5300))
        for i in range(5):
            data, _ = await good.ask(b"ok%d" % i, (f"{net}1", 5300))
            assert data.endswith(b"|ok%d" % i)
    finally:
        bad.close()
        good.close()
        await p.stop()


async def test_no_endpoints_is_port_unreachable_and_records_refused(net: str) -> None:
    # kube-proxy REJECTs UDP with ICMP port unreachable: a connected client's recv fails
    p = await start_proxier([service("none", f"{net}1", [{"port": 5301, "protocol": "UDP"}])])
    c = await UdpClient.open(f"{net}200")
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect((f"{net}1", 5301))
        s.send(b"anyone?")
        s.settimeout(2)
        with pytest.raises(ConnectionRefusedError):
            s.recv(100)
        s.close()
        for _ in range(20):  # a flood is recorded once per client ip:port, not per datagram
            with pytest.raises(TimeoutError):
                await c.ask(b"anyone?", (f"{net}1", 5301), timeout=0.01)
        if os.geteuid() == 0:  # the refusals are seen on a raw socket (needs CAP_NET_RAW)
            flows = await wait_flows(p.ring, 2)
            assert {(f.verdict, f.service, f.protocol) for f in flows} == {
                ("REFUSED", "default/none", "udp")}
    finally:
        c.close()
        await p.stop()


async def test_dead_endpoint_ends_flow_with_error(net: str) -> None:
    # a port nobody listens on answers ICMP port unreachable: the flow ends as ERROR
    ip = f"{net}30"
    objs = [service("dead", f"{net}1", [{"port": 5302, "protocol": "UDP", "targetPort": 9}]),
            endpoint_slice("dead", [{"port": 9, "protocol": "UDP"}], [(ip, "dead-1")])]
    p = await start_proxier(objs, udp_idle_timeout=5)
    c = await UdpClient.open(f"{net}200")
    try:
        assert c.transport is not None
        c.transport.sendto(b"x", (f"{net}1", 5302))
        await asyncio.sleep(0.1)
        c.transport.sendto(b"y", (f"{net}1", 5302))
        flows = await wait_flows(p.ring, 1)
        assert flows[0].verdict == "ERROR" and "Refused" in flows[0].error
    finally:
        c.close()
        await p.stop()
