"""`NetlinkDataplane`: the Dataplane on the real kernel, via pyroute2's `AsyncIPRoute`.

Speed comes from never forking: a netns is made by unshare(CLONE_NEWNET) in this thread
plus a bind mount (what `ip netns add` does), and a netlink socket for a namespace is opened
right there, or after a thread-local setns, instead of pyroute2's forking helpers (~17 ms
each). A pod's veth is created with its peer directly in the pod netns (moving an end costs
~21 ms in the kernel). Node sockets are cached while the node lives; pod sockets are closed
after use. Netlink errors become knet errors naming the object and the way out.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from socket import AF_INET
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

from knet.dataplane import names, nsutil
from knet.dataplane.aioiproute import KnetIPRoute as AsyncIPRoute
from knet.dataplane.aioiproute import (
    Msg,
    RawRtnl,
    addr_replace,
    bridge_port_hairpin,
    default_route_replace,
    link_up,
    veth_add,
)
from knet.dataplane.base import NOT_ROOT, HostConfig, NodeInfo, PodNet
from knet.dataplane.core import RecordedDataplane
from knet.dataplane.kernel import RTPROT_KNET, UNREACHABLE_METRIC
from knet.errors import DataplaneError, KernelObjectExists, KernelObjectMissing

__all__ = ["NetlinkDataplane", "NetlinkKernel", "has_net_admin"]

log = logging.getLogger(__name__)

_GONE = (errno.ENODEV, errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL)
CAP_NET_ADMIN, CAP_SYS_ADMIN = 12, 21
FRESH_ETH0_INDEX = 2          # lo is 1 in every new netns


def has_net_admin() -> bool:
    """True if this process may change netlink objects and namespaces."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                caps = int(line.split()[1], 16)
                return bool(caps >> CAP_NET_ADMIN & 1 and caps >> CAP_SYS_ADMIN & 1)
    return False


@contextmanager
def _nl(what: str, *, way_out: str = "run 'knet down' and try again") -> Iterator[None]:
    """Turn NetlinkError/OSError raised in the block into knet errors naming `what`."""
    try:
        yield
    except NetlinkError as exc:
        code = exc.code
        if code == errno.EPERM:
            raise DataplaneError(NOT_ROOT) from None
        msg = f"{what}: {os.strerror(code) if code else exc}"
        if code == errno.EEXIST:
            raise KernelObjectExists(f"{msg}; {way_out}") from None
        if code in _GONE:
            raise KernelObjectMissing(f"{msg}; {way_out}") from None
        raise DataplaneError(f"{msg}; {way_out}") from None
    except PermissionError:
        raise DataplaneError(NOT_ROOT) from None
    except OSError as exc:
        raise DataplaneError(f"{what}: {exc.strerror or exc}; {way_out}") from None


async def _ignore_gone(coro: object) -> None:
    try:
        await coro  # type: ignore[misc]
    except NetlinkError as exc:
        if exc.code not in _GONE:
            raise


async def _idx(ipr: AsyncIPRoute, ifname: str) -> int | None:
    """Index of `ifname` in the netns of `ipr`, None if absent."""
    found = await ipr.link_lookup(ifname=ifname)
    return found[0] if found else None


class NetlinkKernel:
    """The kernel operations of kernel.py over AsyncIPRoute; see that file for each call."""

    def __init__(self) -> None:
        self._socks: dict[str | None, AsyncIPRoute] = {}
        self._index: dict[tuple[str, str], int] = {}
        self._svc_kind: str | None = None
        self._dump_locks: dict[str | None, asyncio.Lock] = {}

    async def _open(self, netns: str | None, *, create: bool = False) -> AsyncIPRoute:
        """A netlink socket inside `netns` (None: this one), making the netns if asked."""
        ipr = AsyncIPRoute(groups=0)
        if netns is None:
            ipr.socket  # noqa: B018 - opens the socket here
        elif create:
            with _nl(f"netns {netns}"), nsutil.new_netns(netns):
                ipr.socket  # noqa: B018
        else:
            try:
                with nsutil.in_netns(netns):
                    ipr.socket  # noqa: B018
            except FileNotFoundError:
                raise KernelObjectMissing(
                    f"netns {netns}: does not exist; ensure its node again or run "
                    "'knet down'") from None
        await ipr.setup_endpoint()
        return ipr

    async def _sock(self, netns: str | None) -> AsyncIPRoute:
        ipr = self._socks.get(netns)
        if ipr is None:
            ipr = self._socks[netns] = await self._open(netns)
        return ipr

    async def _dump(self, netns: str | None, method: Callable[..., Any]) -> list[Any]:
        """All IPv4 objects of one kind (links, addresses, routes) in `netns`. The kernel
        runs one dump at a time per socket (EBUSY otherwise): callers of one netns queue."""
        lock = self._dump_locks.setdefault(netns, asyncio.Lock())
        async with lock:
            kw = {} if method.__name__ == "link" else {"family": AF_INET}
            return [m async for m in await method("dump", **kw)]

    def _drop(self, netns: str) -> None:
        ipr = self._socks.pop(netns, None)
        if ipr is not None:
            ipr.close()
        for k in [k for k in self._index if k[0] == netns]:
            del self._index[k]

    async def check_root(self) -> None:
        if not has_net_admin():
            raise DataplaneError(NOT_ROOT)

    async def foreign_networks(self) -> list[tuple[str, str]]:
        ipr = await self._sock(None)
        links = {m["index"]: m.get("ifname") for m in await self._dump(None, ipr.link)}
        out: list[tuple[str, str]] = []
        for r in await self._dump(None, ipr.route):
            dev = links.get(r.get("oif"), "?")
            if (r.get("table") != 254 or r["proto"] == RTPROT_KNET or r["dst_len"] == 0
                    or dev == names.HOST_BRIDGE):
                continue
            cidr = f"{r.get('dst')}/{r['dst_len']}"
            out.append((cidr, f"route {cidr} dev {dev}"))
        for a in await self._dump(None, ipr.addr):
            dev = links.get(a["index"], "?")
            if dev in (names.HOST_BRIDGE, "lo"):
                continue
            out.append((f"{a.get('address')}/{a['prefixlen']}",
                        f"address {a.get('address')}/{a['prefixlen']} on {dev}"))
        return out

    async def ensure_host(self, cfg: HostConfig) -> bool:
        ipr = await self._sock(None)
        br = await _idx(ipr, names.HOST_BRIDGE)
        created = br is None
        prefix = int(cfg.underlay_cidr.split("/")[1])
        with _nl(f"host: bridge {names.HOST_BRIDGE}"):
            if br is None:
                await ipr.link("add", ifname=names.HOST_BRIDGE, kind="bridge",
                               address=names.pod_mac(cfg.host_ip))
                br = await _idx(ipr, names.HOST_BRIDGE)
            await ipr.link("set", index=br, state="up")
            await ipr.addr("replace", index=br, address=cfg.host_ip, prefixlen=prefix)
        for cidr in (cfg.pod_cidr, cfg.service_cidr):
            with _nl(f"host: unreachable route {cidr}"):
                await ipr.route("replace", dst=cidr, type="unreachable", proto=RTPROT_KNET,
                                priority=UNREACHABLE_METRIC)
        return created

    async def remove_host(self, cfg: HostConfig, *, remove_bridge: bool) -> None:
        ipr = await self._sock(None)
        for cidr in (cfg.pod_cidr, cfg.service_cidr):
            await _ignore_gone(ipr.route("del", dst=cidr, type="unreachable", proto=RTPROT_KNET,
                                         priority=UNREACHABLE_METRIC))
        br = await _idx(ipr, names.HOST_BRIDGE)
        if br is not None and remove_bridge:
            with _nl(f"host: bridge {names.HOST_BRIDGE}"):
                await _ignore_gone(ipr.link("del", index=br))
        elif br is not None:
            prefix = int(cfg.underlay_cidr.split("/")[1])
            await _ignore_gone(ipr.addr("del", index=br, address=cfg.host_ip, prefixlen=prefix))

    async def ensure_node(self, node: NodeInfo, *, prefixlen: int, host: HostConfig) -> None:
        hostipr = await self._sock(None)
        what = f"node {node.name}"
        if not nsutil.is_netns(node.netns):
            self._drop(node.netns)          # a socket into a namespace that is gone
            self._socks[node.netns] = await self._open(node.netns, create=True)
        ipr = await self._sock(node.netns)
        self._index.pop((node.netns, names.NODE_BRIDGE), None)
        knet0 = await _idx(hostipr, names.HOST_BRIDGE)
        if knet0 is None:
            raise KernelObjectMissing(f"{what}: host bridge {names.HOST_BRIDGE} is missing; call "
                                      "ensure_host() again ('knet up')")
        with _nl(f"{what}: underlay veth {node.host_ifname} in the host"):
            await self._veth(hostipr, ipr, node.netns, node.host_ifname, knet0,
                             mac=names.pod_mac(node.underlay_ip), mtu=1500)
        eth0 = await _idx(ipr, "eth0")
        with _nl(f"{what}: eth0 {node.underlay_ip} in netns {node.netns}"):
            await ipr.link("set", index=1, state="up")
            await ipr.link("set", index=eth0, state="up")
            await ipr.addr("replace", index=eth0, address=node.underlay_ip, prefixlen=prefixlen)
            await ipr.route("replace", dst="0.0.0.0/0", gateway=host.host_ip)
        pod_prefix = int(node.pod_cidr.split("/")[1])
        await self._bridge(ipr, node, names.NODE_BRIDGE, "bridge", (node.gateway, pod_prefix),
                           mac=names.pod_mac(node.gateway), mtu=node.mtu)
        await self._bridge(ipr, node, node.svc_ifname, await self._svc_device_kind(ipr), None,
                           mac=names.pod_mac(node.underlay_ip, first=0x59))
        # /proc/sys/net is the netns of the opening thread: a sysctl write, not disk I/O
        with (_nl(f"{what}: ip_forward in netns {node.netns}"), nsutil.in_netns(node.netns),
              open("/proc/sys/net/ipv4/ip_forward", "w") as f):  # noqa: ASYNC230
            f.write("1\n")

    async def _veth(self, ipr: AsyncIPRoute, peer_ipr: AsyncIPRoute, peer_netns: str,
                    ifname: str, master: int, *, mac: str, mtu: int) -> None:
        """veth `ifname` (on `master`, up) whose peer is eth0 in `peer_netns`; repairs a
        half pair (one end missing) by making it anew."""
        have = await _idx(ipr, ifname)
        peer = await _idx(peer_ipr, names.POD_IFNAME)
        if have is not None and peer is not None:
            await ipr.link("set", index=have, master=master, state="up")
            return
        if have is not None:
            await _ignore_gone(ipr.link("del", index=have))
        if peer is not None:
            await _ignore_gone(peer_ipr.link("del", index=peer))
        await self._add_veth(ipr, peer_netns, ifname, master, mac=mac, mtu=mtu)

    async def _add_veth(self, ipr: AsyncIPRoute, peer_netns: str, ifname: str, master: int,
                        *, mac: str, mtu: int) -> None:
        fd = os.open(nsutil.netns_path(peer_netns), os.O_RDONLY)
        try:
            await ipr.send_batch([veth_add(ifname, master=master, peer_netns_fd=fd,
                                           peer_mac=mac, mtu=mtu), bridge_port_hairpin(ifname)])
        finally:
            os.close(fd)

    async def _bridge(self, ipr: AsyncIPRoute, node: NodeInfo, ifname: str, kind: str,
                      addr: tuple[str, int] | None, *, mac: str, mtu: int = 1500) -> None:
        with _nl(f"node {node.name}: {kind} {ifname} in netns {node.netns}"):
            idx = await _idx(ipr, ifname)
            if idx is None:
                await ipr.link("add", ifname=ifname, kind=kind, address=mac)
                idx = await _idx(ipr, ifname)
            await ipr.link("set", index=idx, state="up", mtu=mtu)
            if addr is not None:
                await ipr.addr("replace", index=idx, address=addr[0], prefixlen=addr[1])

    async def _svc_device_kind(self, ipr: AsyncIPRoute) -> str:
        """'dummy' where the kernel has it, else an empty 'bridge' (detected once)."""
        if self._svc_kind is None:
            try:
                await ipr.link("add", ifname="knet-probe", kind="dummy")
            except NetlinkError:
                self._svc_kind = "bridge"
            else:
                await _ignore_gone(ipr.link("del", ifname="knet-probe"))
                self._svc_kind = "dummy"
            log.info("dataplane: ClusterIPs go on a %s device (%s)", self._svc_kind,
                     names.SVC_IFNAME)
        return self._svc_kind

    async def remove_node(self, node: NodeInfo) -> None:
        hostipr = await self._sock(None)
        idx = await _idx(hostipr, node.host_ifname)
        if idx is not None:
            await _ignore_gone(hostipr.link("del", index=idx))
        self._drop(node.netns)
        with _nl(f"node {node.name}: netns {node.netns}"):
            nsutil.remove_netns(node.netns)

    async def set_routes(self, netns: str | None, wanted: dict[str, str], *,
                         remove: list[str] | None = None) -> None:
        ipr = await self._sock(netns)
        where = f"netns {netns}" if netns else "host"
        have: dict[str, str | None] = {}
        for r in await self._dump(netns, ipr.route):
            if (r.get("table") == 254 and r["proto"] == RTPROT_KNET and r["type"] == 1
                    and r["dst_len"] > 0):
                have[f"{r.get('dst')}/{r['dst_len']}"] = r.get("gateway")
        for dst, via in have.items():
            stale = wanted.get(dst) != via if remove is None else (
                dst in remove and dst not in wanted)
            if stale:
                await _ignore_gone(ipr.route("del", dst=dst, proto=RTPROT_KNET, gateway=via))
        for dst, via in wanted.items():
            if have.get(dst) != via:
                with _nl(f"{where}: route {dst} via {via}"):
                    await ipr.route("replace", dst=dst, gateway=via, proto=RTPROT_KNET)

    async def ensure_pod(self, node: NodeInfo, pod: PodNet, *, prefixlen: int) -> None:
        nodeipr = await self._sock(node.netns)
        bridge = await self._cni0(nodeipr, node)
        if not nsutil.is_netns(pod.netns) and await self._new_pod(nodeipr, bridge, pod,
                                                                   prefixlen, mtu=node.mtu):
            return
        podipr = await self._open(pod.netns)
        try:
            with _nl(f"pod {pod.key}: veth {pod.host_ifname} in netns {node.netns}"):
                await self._veth(nodeipr, podipr, pod.netns, pod.host_ifname, bridge,
                                 mac=pod.mac, mtu=node.mtu)
            eth0 = await _idx(podipr, names.POD_IFNAME)
            if eth0 is None:
                raise KernelObjectMissing(
                    f"pod {pod.key}: eth0 is missing in netns {pod.netns}; ensure "
                    "the pod again")
            with _nl(f"pod {pod.key}: eth0 {pod.ip} in netns {pod.netns}"):
                await podipr.send_batch(self._eth0_msgs(eth0, pod, prefixlen))
        finally:
            podipr.close()

    async def _new_pod(self, nodeipr: AsyncIPRoute, bridge: int, pod: PodNet,
                       prefixlen: int, *, mtu: int) -> bool:
        """The hot path: a new netns, the veth born with its peer inside, and lo, eth0,
        address and route in one batch on a bare socket. In a netns made just now, eth0 is
        the second device ever made: ifindex 2. False if not (the caller repairs)."""
        with _nl(f"pod {pod.key}: netns {pod.netns}"), nsutil.new_netns(pod.netns):
            raw = RawRtnl()
        try:
            with _nl(f"pod {pod.key}: veth {pod.host_ifname} in netns {pod.netns}"):
                await self._add_veth(nodeipr, pod.netns, pod.host_ifname, bridge, mac=pod.mac,
                                     mtu=mtu)
            try:
                raw.send_batch(self._eth0_msgs(FRESH_ETH0_INDEX, pod, prefixlen))
            except NetlinkError as exc:
                if exc.code == errno.ENODEV:
                    return False
                with _nl(f"pod {pod.key}: eth0 {pod.ip} in netns {pod.netns}"):
                    raise
        finally:
            raw.close()
        return True

    @staticmethod
    def _eth0_msgs(eth0: int, pod: PodNet, prefixlen: int) -> list[Msg]:
        return [link_up(1), link_up(eth0), addr_replace(eth0, pod.ip, prefixlen),
                default_route_replace(pod.gateway)]

    async def _cni0(self, ipr: AsyncIPRoute, node: NodeInfo) -> int:
        key = (node.netns, names.NODE_BRIDGE)
        if key not in self._index:
            idx = await _idx(ipr, names.NODE_BRIDGE)
            if idx is None:
                raise KernelObjectMissing(
                    f"node {node.name}: bridge {names.NODE_BRIDGE} is missing in "
                    f"netns {node.netns}; ensure the node again")
            self._index[key] = idx
        return self._index[key]

    async def remove_pod(self, node: NodeInfo, pod: PodNet, *, node_going: bool = False) -> None:
        # deleting a veth waits for RCU (~25 ms); with the node going, its netns takes them
        # all down in one batch instead
        if not node_going and os.path.exists(nsutil.netns_path(node.netns)):
            ipr = await self._sock(node.netns)
            with _nl(f"pod {pod.key}: veth {pod.host_ifname}"):
                await _ignore_gone(ipr.link("del", ifname=pod.host_ifname))
        with _nl(f"pod {pod.key}: netns {pod.netns}"):
            nsutil.remove_netns(pod.netns)

    async def set_address(self, netns: str, ifname: str, ip: str, *, present: bool) -> None:
        ipr = await self._sock(netns)
        idx = await _idx(ipr, ifname)
        if idx is None:
            raise KernelObjectMissing(f"netns {netns}: no device {ifname}; ensure the node again")
        with _nl(f"netns {netns}: address {ip} on {ifname}"):
            if present:
                await ipr.addr("replace", index=idx, address=ip, prefixlen=32)
            else:
                await _ignore_gone(ipr.addr("del", index=idx, address=ip, prefixlen=32))

    async def addresses(self, netns: str, ifname: str) -> list[str]:
        ipr = await self._sock(netns)
        idx = await _idx(ipr, ifname)
        if idx is None:
            return []
        return [a.get("address") for a in await self._dump(netns, ipr.addr)
                if a["index"] == idx and a["prefixlen"] == 32]

    async def close(self) -> None:
        for netns in list(self._socks):
            ipr = self._socks.pop(netns)
            ipr.close()
        self._index.clear()


class NetlinkDataplane(RecordedDataplane):
    """The Dataplane on this host's kernel; `state_dir` holds the record and IPAM files."""

    def __init__(self, state_dir: str | Path) -> None:
        super().__init__(state_dir, kernel=NetlinkKernel())
