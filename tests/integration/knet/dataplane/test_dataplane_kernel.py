"""NetlinkDataplane on the real kernel: packets between pods and nodes, nothing left behind,
crash repair, bad input. Runs inside `knet sandbox` (see tests/integration/conftest.py)."""

from __future__ import annotations

import difflib
import os
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from knet.dataplane import nsutil
from knet.dataplane.base import NOT_ROOT, NodeSpec, PodNet
from knet.dataplane.netlink import NetlinkDataplane, NetlinkKernel
from knet.errors import UsageError

N1, N2 = NodeSpec.default(1), NodeSpec.default(2)


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=30).stdout


def netns_list() -> list[str]:
    return sorted(os.listdir(nsutil.NETNS_RUN_DIR)) if os.path.isdir(nsutil.NETNS_RUN_DIR) else []


def in_ns(ns: str | None, *cmd: str) -> str:
    return sh(*(("ip", "netns", "exec", ns) if ns else ()), *cmd)


def world(state_dir: Path) -> dict[str, object]:
    """Everything a leak could hide in: namespaces, links, addresses, routes (every netns),
    mounts, processes, state files. IPv4 only (IPv6 link-locals come and go with DAD on their
    own), bridge timers and carrier state cut (a bridge's carrier follows its ports a
    moment later), since those move by themselves."""
    snap: dict[str, object] = {"netns": netns_list()}
    for ns in [None, *netns_list()]:
        links = re.sub(r"\b\w+_timer\s+\S+|NO-CARRIER,|,LOWER_UP|\bstate \w+", "",
                       in_ns(ns, "ip", "-d", "-o", "link"))
        addrs = in_ns(ns, "ip", "-4", "-o", "addr")
        routes = in_ns(ns, "ip", "-4", "route", "show", "table", "all").replace(" linkdown", "")
        snap[f"{ns}"] = (links, addrs, routes)
    snap["mounts"] = Path("/proc/mounts").read_text()
    snap["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    snap["files"] = sorted(str(p) for p in state_dir.rglob("*") if p.is_file())
    return snap


def changes(before: dict[str, object], after: dict[str, object]) -> list[str]:
    """Lines that differ between two world() snapshots, for a readable failure."""
    out: list[str] = []
    for key in sorted(set(before) | set(after)):
        a, b = str(before.get(key, "")).split("\\n"), str(after.get(key, "")).split("\\n")
        out += [f"{key}: {line}" for line in difflib.unified_diff(a, b, lineterm="", n=0)
                if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    return out


def tcp_roundtrip(server_ns: str | None, server_ip: str, client_ns: str | None) -> bytes:
    """Listen in one netns, connect from another (sockets made after a thread-local setns),
    and return what came back through the real path."""
    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        return s
    if server_ns:
        with nsutil.in_netns(server_ns):
            srv = make()
    else:
        srv = make()
    if client_ns:
        with nsutil.in_netns(client_ns):
            cli = make()
    else:
        cli = make()
    with srv, cli:
        srv.bind((server_ip, 0))
        srv.listen(1)
        cli.connect((server_ip, srv.getsockname()[1]))
        conn, peer = srv.accept()
        with conn:
            cli.sendall(b"ping from " + peer[0].encode())
            conn.sendall(conn.recv(100).upper())
            return cli.recv(100)


@pytest.fixture
async def dp(tmp_path: Path) -> AsyncIterator[NetlinkDataplane]:
    d = NetlinkDataplane(tmp_path)
    await d.ensure_host()
    await d.ensure_node(N1)
    await d.ensure_node(N2)
    await d.ensure_node_routes("node-1", [N1, N2])
    await d.ensure_node_routes("node-2", [N1, N2])
    try:
        yield d
    finally:
        await d.cleanup()
        await d.close()
    assert netns_list() == []


async def test_two_nodes_two_pods_each_talk_over_tcp(dp: NetlinkDataplane) -> None:
    a1, a2 = [await dp.ensure_pod("node-1", f"default/a{i}") for i in (1, 2)]
    b1, b2 = [await dp.ensure_pod("node-2", f"default/b{i}") for i in (1, 2)]
    assert tcp_roundtrip(a1.netns, a1.ip, a2.netns) == f"PING FROM {a2.ip}".encode()
    assert tcp_roundtrip(b2.netns, b2.ip, a1.netns) == f"PING FROM {a1.ip}".encode()
    assert tcp_roundtrip(a2.netns, a2.ip, b1.netns) == f"PING FROM {b1.ip}".encode()
    # the host reaches a pod on either node (via knet0 and the node's eth0)
    assert tcp_roundtrip(b2.netns, b2.ip, None) == b"PING FROM 172.18.0.1"
    assert tcp_roundtrip(a1.netns, a1.ip, None) == b"PING FROM 172.18.0.1"
    # ensuring everything again (a restarted agent does) changes nothing that works
    again = NetlinkDataplane(dp.records.root)
    await again.ensure_host()
    await again.ensure_node(N1)
    await again.ensure_node_routes("node-1", [N1, N2])
    assert await again.ensure_pod("node-1", "default/a1") == a1
    await again.close()
    assert tcp_roundtrip(a1.netns, a1.ip, b2.netns) == f"PING FROM {b2.ip}".encode()


async def test_pod_sandbox_as_seen_from_inside(dp: NetlinkDataplane) -> None:
    pod = await dp.ensure_pod("node-1", "default/web-1")
    addrs = in_ns(pod.netns, "ip", "-o", "-4", "addr")
    assert f"eth0    inet {pod.ip}/24" in addrs and "lo    inet 127.0.0.1/8" in addrs
    assert in_ns(pod.netns, "ip", "route").startswith(f"default via {pod.gateway} dev eth0")
    assert f"link/ether {pod.mac}" in in_ns(pod.netns, "ip", "link", "show", "eth0")
    host_end = in_ns("knet-node-1", "ip", "-d", "link", "show", pod.host_ifname)
    assert "master cni0" in host_end and "state UP" in host_end
    assert in_ns("knet-node-1", "sysctl", "-n", "net.ipv4.ip_forward").strip() == "1"


async def test_service_ip_is_reachable_from_a_pod_and_the_host(dp: NetlinkDataplane) -> None:
    pod = await dp.ensure_pod("node-2", "default/client")
    await dp.add_service_ip("node-2", "10.96.0.10")
    await dp.add_service_ip("node-1", "10.96.0.10")
    assert "10.96.0.10/32" in in_ns("knet-node-2", "ip", "-o", "addr", "show", "knet-svc")
    assert tcp_roundtrip("knet-node-2", "10.96.0.10", pod.netns) == f"PING FROM {pod.ip}".encode()
    assert tcp_roundtrip("knet-node-1", "10.96.0.10", None) == b"PING FROM 172.18.0.1"


async def test_host_does_not_leak_unserved_addresses(dp: NetlinkDataplane) -> None:
    routes = in_ns(None, "ip", "route")
    assert "unreachable 10.244.0.0/16" in routes and "unreachable 10.96.0.0/12" in routes
    with socket.socket() as s:
        s.settimeout(2)
        with pytest.raises(OSError):      # no route out: refused by the host, not sent
            s.connect(("10.244.77.5", 80))


async def test_100_pods_leave_nothing_behind(dp: NetlinkDataplane, tmp_path: Path) -> None:
    # warm up: cni0's first port ever turns its carrier on for good; that is the bridge's
    # state, not an object left behind
    await dp.delete_pod("node-1", (await dp.ensure_pod("node-1", "default/warm-up")).key)
    before = world(tmp_path)
    pods = [await dp.ensure_pod("node-1", f"default/p{i}") for i in range(100)]
    assert len({p.ip for p in pods}) == 100 and len(netns_list()) == 102
    assert tcp_roundtrip(pods[99].netns, pods[99].ip, pods[0].netns)
    for p in pods:
        await dp.delete_pod("node-1", p.key)
    diff = changes(before, world(tmp_path))
    assert diff == [], "\n".join(diff)


async def test_delete_node_removes_its_pods_objects(dp: NetlinkDataplane) -> None:
    pods = [await dp.ensure_pod("node-2", f"default/p{i}") for i in range(3)]
    await dp.ensure_pod("node-1", "default/stays")
    await dp.delete_node("node-2")
    left = netns_list()
    assert "knet-node-2" not in left and not {p.netns for p in pods} & set(left)
    host_links = in_ns(None, "ip", "-o", "link")
    assert NodeInfoName.host(N2) not in host_links and NodeInfoName.host(N1) in host_links
    assert "10.244.2.0/24" not in in_ns(None, "ip", "route")


class NodeInfoName:
    @staticmethod
    def host(spec: NodeSpec) -> str:
        from knet.dataplane import names
        return names.node_host_ifname(spec.name)


async def test_second_ensure_is_a_noop(dp: NetlinkDataplane) -> None:
    pod = await dp.ensure_pod("node-1", "default/a")
    links = in_ns("knet-node-1", "ip", "-o", "link")
    inside = in_ns(pod.netns, "ip", "-o", "link")
    assert await dp.ensure_pod("node-1", "default/a") == pod
    assert in_ns("knet-node-1", "ip", "-o", "link") == links
    assert in_ns(pod.netns, "ip", "-o", "link") == inside      # same ifindex: not remade


class Crash(Exception):
    pass


async def test_crash_half_way_is_repaired(dp: NetlinkDataplane, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    real = NetlinkKernel._add_veth

    async def die(*args: object, **kw: object) -> None:
        raise Crash("process died after making the netns")
    monkeypatch.setattr(NetlinkKernel, "_add_veth", die)
    with pytest.raises(Crash):
        await dp.ensure_pod("node-1", "default/a")
    monkeypatch.setattr(NetlinkKernel, "_add_veth", real)
    half = [n for n in netns_list() if n.startswith("knet-p-")]
    assert len(half) == 1 and "eth0" not in in_ns(half[0], "ip", "-o", "link")
    fresh = NetlinkDataplane(tmp_path)          # as after a restart
    try:
        pod = await fresh.ensure_pod("node-1", "default/a")
        assert pod.netns == half[0]
        assert tcp_roundtrip(pod.netns, pod.ip, None) == b"PING FROM 172.18.0.1"
        # other half-states: the node end deleted, the address flushed
        in_ns("knet-node-1", "ip", "link", "del", pod.host_ifname)
        assert await fresh.ensure_pod("node-1", "default/a") == pod
        in_ns(pod.netns, "ip", "addr", "flush", "dev", "eth0")
        assert await fresh.ensure_pod("node-1", "default/a") == pod
        assert tcp_roundtrip(pod.netns, pod.ip, None) == b"PING FROM 172.18.0.1"
    finally:
        await fresh.close()


async def test_leftovers_of_a_crash_before_the_mount_and_a_lost_node_netns(
        dp: NetlinkDataplane) -> None:
    first = await dp.ensure_pod("node-1", "default/a")
    await dp.delete_pod("node-1", "default/a")
    Path(nsutil.netns_path(first.netns)).touch()        # died between create and mount
    pod = await dp.ensure_pod("node-1", "default/a")
    assert pod.netns == first.netns and nsutil.is_netns(pod.netns)
    assert tcp_roundtrip(pod.netns, pod.ip, None) == b"PING FROM 172.18.0.1"
    other = await dp.ensure_pod("node-2", "default/b")
    sh("ip", "netns", "del", "knet-node-1")            # someone removed the node's netns
    await dp.ensure_node(N1)                           # brings back its host-gw routes too
    assert await dp.ensure_pod("node-1", "default/a") == pod
    # same MACs as before: the host's and node-2's neighbour caches stay right
    assert tcp_roundtrip(pod.netns, pod.ip, None) == b"PING FROM 172.18.0.1"
    assert tcp_roundtrip(pod.netns, pod.ip, other.netns) == f"PING FROM {other.ip}".encode()


async def test_cidr_overlapping_the_hosts_own_is_refused(tmp_path: Path) -> None:
    sh("ip", "link", "add", "hostbr9", "type", "bridge")
    try:
        sh("ip", "addr", "add", "10.244.3.1/24", "dev", "hostbr9")
        sh("ip", "link", "set", "hostbr9", "up")
        d = NetlinkDataplane(tmp_path)
        with pytest.raises(UsageError, match=r"pod CIDR 10.244.0.0/16 overlaps the host's own "
                                             r"(route 10.244.3.0/24 dev|address 10.244.3.1/24 "
                                             r"on) hostbr9"):
            await d.ensure_host()
        assert "knet0" not in in_ns(None, "ip", "-o", "link") and netns_list() == []
        await d.ensure_host(pod_cidr="10.200.0.0/16")
        await d.cleanup()
        await d.close()
        assert "knet0" not in in_ns(None, "ip", "-o", "link")
    finally:
        sh("ip", "link", "del", "hostbr9")


def test_not_root_is_one_clear_line(tmp_path: Path) -> None:
    code = ("import asyncio, sys\n"
            "from knet.dataplane.netlink import NetlinkDataplane\n"
            "from knet.errors import KnetError\n"
            f"d = NetlinkDataplane({str(tmp_path)!r})\n"
            "try:\n    asyncio.run(d.ensure_host())\n"
            "except KnetError as e:\n    print(e); sys.exit(3)\n")
    out = subprocess.run(["setpriv", "--inh-caps=-all", "--bounding-set=-all", sys.executable,
                          "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert (out.returncode, out.stdout.strip()) == (3, NOT_ROOT), out.stderr
    assert "knet0" not in in_ns(None, "ip", "-o", "link")
    assert list(tmp_path.rglob("*.json")) == []


def test_podnet_repr() -> None:
    p = PodNet(key="default/web-1", netns="knet-p-1", ip="10.244.1.5", gateway="10.244.1.1",
               host_ifname="kn1", node="node-1", mac="0a:58:0a:f4:01:05")
    assert repr(p) == "<Pod default/web-1 10.244.1.5 node-1 netns=knet-p-1>"


def test_works_on_uvloop(tmp_path: Path) -> None:
    """knet's daemons run on uvloop, which refuses AF_NETLINK datagram endpoints: the
    dataplane must work there all the same."""
    import uvloop

    async def scenario() -> tuple[PodNet, PodNet]:
        d = NetlinkDataplane(tmp_path)
        try:
            await d.ensure_host()
            await d.ensure_node(N1)
            a = await d.ensure_pod("node-1", "default/a")
            b = await d.ensure_pod("node-1", "default/b")
            assert tcp_roundtrip(a.netns, a.ip, b.netns) == f"PING FROM {b.ip}".encode()
            return a, b
        finally:
            await d.cleanup()
            await d.close()
    a, b = uvloop.run(scenario())
    assert a.ip != b.ip and netns_list() == []


async def test_concurrent_calls_share_a_node_socket(dp: NetlinkDataplane) -> None:
    """Pod creation reads its acks straight off the node's netlink socket; dumps running at
    the same time on that socket (a proxy listing ClusterIPs) must still get theirs."""
    for i in range(20):
        await dp.add_service_ip("node-1", f"10.96.1.{i + 1}")
    want = sorted((f"10.96.1.{i + 1}" for i in range(20)), key=lambda a: tuple(
        int(x) for x in a.split(".")))

    async def lister() -> list[list[str]]:
        return [await dp.list_service_ips("node-1") for _ in range(10)]
    import asyncio
    pods, *lists = await asyncio.gather(
        asyncio.gather(*(dp.ensure_pod("node-1", f"default/c{i}") for i in range(20))),
        lister(), lister())
    assert all(got == want for chunk in lists for got in chunk)
    assert len({p.ip for p in pods}) == 20
    assert tcp_roundtrip(pods[19].netns, pods[19].ip, pods[0].netns)
