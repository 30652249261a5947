"""The rendered NetworkPolicy table on the real kernel, without a cluster: two nodes built by
the real dataplane (bridge cni0 + br_netfilter, host-gw routes), pods serving TCP and UDP,
the table programmed by LibNft, connections made from inside pod netns, drops read back over
NFLOG. Fast (seconds), so the kernel facts the design rests on fail here first."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from knet.dataplane.base import NodeSpec, PodNet
from knet.dataplane.netlink import NetlinkDataplane
from knet.dataplane.nflog import Logged, NflogReader
from knet.dataplane.nft import LibNft
from knet.dataplane.nsutil import in_netns
from knet.policy.model import PodInfo, compile_model
from knet.policy.nftrules import LOG_GROUP, render
from knet.policy.probe import connect

pytestmark = pytest.mark.root


@contextmanager
def _serve(netns: str, port: int) -> Iterator[None]:
    """TCP accept-and-close and UDP echo on `port` inside `netns`."""
    with in_netns(netns):
        tcp = socket.socket()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("0.0.0.0", port))
    tcp.listen(64)
    udp.bind(("0.0.0.0", port))
    tcp.settimeout(0.2)
    udp.settimeout(0.2)
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                conn, _ = tcp.accept()
                conn.close()
            except OSError:
                pass
            try:
                data, addr = udp.recvfrom(512)
                udp.sendto(data, addr)
            except OSError:
                pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()
        tcp.close()
        udp.close()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    dp = NetlinkDataplane(tmp_path)
    await dp.ensure_host()
    specs = [NodeSpec.default(1), NodeSpec.default(2)]
    for s in specs:
        await dp.ensure_node(s)
    for s in specs:
        await dp.ensure_node_routes(s.name, specs)
    nets: dict[str, PodNet] = {}
    for key, node in (("x/a", "node-1"), ("x/b", "node-1"), ("y/a", "node-2")):
        nets[key] = await dp.ensure_pod(node, key)
    pods = [PodInfo(k.split("/")[0], k.split("/")[1], n.ip, n.node, {"pod": k[-1]},
                    (("serve-80", 80, "tcp"),)) for k, n in nets.items()]
    nft = LibNft()
    try:
        yield {"dp": dp, "nets": nets, "pods": pods, "nft": nft}
    finally:
        nft.close()
        await dp.cleanup()
        await dp.close()


async def _program(w: dict[str, Any], policies: list[dict[str, Any]]) -> None:
    model = compile_model(policies, w["pods"], [])
    for node in ("node-1", "node-2"):
        await w["nft"].apply(f"knet-{node}", render(model, node))


async def _reach(w: dict[str, Any], src: str, dst: str, port: int = 80,
                 proto: str = "tcp") -> bool:
    nets = w["nets"]
    return await asyncio.to_thread(connect, nets[src].netns, nets[dst].ip, port, proto, 0.7)


async def test_ingress_is_enforced_on_one_node_and_across_nodes_with_drops_logged(
        world: dict[str, Any]) -> None:
    nets = world["nets"]
    logged: list[Logged] = []
    reader = NflogReader("knet-node-1", LOG_GROUP)
    reader.start(logged.append)
    try:
        with _serve(nets["x/a"].netns, 80), _serve(nets["x/a"].netns, 81):
            assert await _reach(world, "y/a", "x/a") and await _reach(world, "x/b", "x/a")
            await _program(world, [{"metadata": {"namespace": "x", "name": "from-b"}, "spec": {
                "podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{
                    "from": [{"podSelector": {"matchLabels": {"pod": "b"}}}],
                    "ports": [{"port": "serve-80", "protocol": "TCP"}]}]}}])
            assert await _reach(world, "x/b", "x/a")              # same node, bridged, allowed
            assert not await _reach(world, "x/b", "x/a", 81)      # port not allowed
            assert not await _reach(world, "y/a", "x/a")          # other node, routed, denied
            assert not await _reach(world, "x/b", "x/a", 80, "udp")   # protocol not allowed
            # the node's own traffic (kubelet probes) is always allowed
            assert await asyncio.to_thread(connect, "knet-node-1", nets["x/a"].ip, 81, "tcp", 0.7)
            await asyncio.sleep(0.2)
    finally:
        reader.close()
    seen = {(p.src, p.dst, p.dport, p.protocol, p.prefix.strip()) for p in logged}
    ip = {k: n.ip for k, n in nets.items()}
    assert (ip["y/a"], ip["x/a"], 80, "tcp", f"knetpol ingress {ip['x/a']}") in seen
    assert (ip["x/b"], ip["x/a"], 81, "tcp", f"knetpol ingress {ip['x/a']}") in seen
    assert (ip["x/b"], ip["x/a"], 80, "udp", f"knetpol ingress {ip['x/a']}") in seen
    assert not any(p.src == ip["x/b"] and p.dport == 80 and p.protocol == "tcp" for p in logged)


async def test_egress_default_deny_then_allow_udp_by_port(world: dict[str, Any]) -> None:
    """x is isolated both ways: the replies of allowed connections get back in only as
    conntrack's established traffic — routed (UDP from node-2) and bridged (TCP on node-1)."""
    nets = world["nets"]
    with _serve(nets["y/a"].netns, 80), _serve(nets["x/b"].netns, 80):
        deny = {"metadata": {"namespace": "x", "name": "deny-out"},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}
        await _program(world, [deny])
        assert not await _reach(world, "x/a", "y/a", 80, "udp")
        assert await _reach(world, "y/a", "x/a", 80, "udp") is False   # nobody serves x/a
        allow = {"metadata": {"namespace": "x", "name": "udp-80"}, "spec": {
            "podSelector": {}, "policyTypes": ["Egress"],
            "egress": [{"ports": [{"port": 80, "protocol": "UDP"}]}]}}
        await _program(world, [deny, allow])
        assert await _reach(world, "x/a", "y/a", 80, "udp")     # replies pass (conntrack)
        assert not await _reach(world, "x/a", "y/a", 80, "tcp")
        assert not await _reach(world, "x/a", "x/b", 80, "tcp")
        same_node = {"metadata": {"namespace": "x", "name": "a-to-b"}, "spec": {
            "podSelector": {}, "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "a"}}}]}],
            "egress": [{"to": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}}
        await _program(world, [deny, allow, same_node])
        assert await _reach(world, "x/a", "x/b", 80, "tcp")
        assert not await _reach(world, "x/b", "x/a", 80, "tcp")


async def test_a_transparent_dial_from_the_node_is_judged_by_the_client_pod_ip(
        world: dict[str, Any]) -> None:
    """What the proxy does once it keeps the client's IP (IP_TRANSPARENT): the packet
    leaves through the node netns' OUTPUT hook with the pod's source, and meets its policy."""
    nets = world["nets"]
    logged: list[Logged] = []
    reader = NflogReader("knet-node-1", LOG_GROUP)
    reader.start(logged.append)
    await _program(world, [{"metadata": {"namespace": "x", "name": "from-b"}, "spec": {
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}}])

    def dial(src_ip: str) -> None:
        with in_netns("knet-node-1"):
            s = socket.socket()
        s.setsockopt(socket.SOL_IP, 19, 1)   # IP_TRANSPARENT
        s.bind((src_ip, 0))
        s.settimeout(0.5)
        try:
            s.connect((nets["x/a"].ip, 80))
        except OSError:
            pass
        finally:
            s.close()

    try:
        await asyncio.to_thread(dial, nets["y/a"].ip)
        await asyncio.sleep(0.2)
    finally:
        reader.close()
    assert any(p.src == nets["y/a"].ip and p.dst == nets["x/a"].ip and p.dport == 80
               for p in logged), logged
