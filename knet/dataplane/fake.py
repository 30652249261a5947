"""`FakeDataplane`: the dataplane semantics over an in-memory kernel, for unit tests.

`FakeKernel` models what the netlink kernel keeps (namespaces, links with masters and
peers, addresses, knet's routes) closely enough that the contract tests can check the same
facts on both twins, plus two knobs the real kernel cannot give cheaply: `root=False`
(no CAP_NET_ADMIN) and `crash_at` (die half-way through a pod's creation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from knet.dataplane import names
from knet.dataplane.base import NOT_ROOT, HostConfig, NodeInfo, PodNet
from knet.dataplane.core import RecordedDataplane
from knet.errors import DataplaneError, KernelObjectMissing

__all__ = ["FakeDataplane", "FakeKernel", "SimulatedCrash"]

HOST = "<host>"


class SimulatedCrash(Exception):
    """Raised by FakeKernel where `crash_at` says, as if the process died there."""


@dataclass
class FakeLink:
    kind: str
    up: bool = False
    master: str | None = None
    peer: tuple[str, str] | None = None      # (netns, ifname)
    addrs: set[str] = field(default_factory=set)


@dataclass
class FakeNetns:
    links: dict[str, FakeLink] = field(default_factory=lambda: {"lo": FakeLink("loopback")})
    routes: dict[str, str] = field(default_factory=dict)   # knet routes: dst -> via
    forwarding: bool = False


class FakeKernel:
    """In-memory twin of NetlinkKernel (see kernel.py for each call)."""

    def __init__(self, *, root: bool = True,
                 foreign: list[tuple[str, str]] | None = None) -> None:
        self.root = root
        self.foreign = list(foreign or [])
        self.crash_at: str | None = None
        self.ns: dict[str, FakeNetns] = {HOST: FakeNetns()}

    def _step(self, name: str) -> None:
        if self.crash_at == name:
            self.crash_at = None
            raise SimulatedCrash(name)

    def _get(self, netns: str) -> FakeNetns:
        if netns not in self.ns:
            raise KernelObjectMissing(
                f"netns {netns}: does not exist; run 'knet down' and 'knet up'")
        return self.ns[netns]

    def _veth(self, a: tuple[str, str], b: tuple[str, str]) -> None:
        self.ns[a[0]].links[a[1]] = FakeLink("veth", peer=b)
        self.ns[b[0]].links[b[1]] = FakeLink("veth", peer=a)

    def _del_link(self, netns: str, ifname: str) -> None:
        link = self.ns.get(netns, FakeNetns()).links.pop(ifname, None)
        if link is not None and link.peer is not None and link.peer[0] in self.ns:
            self.ns[link.peer[0]].links.pop(link.peer[1], None)

    def _del_netns(self, netns: str) -> None:
        ns = self.ns.pop(netns, None)
        for ifname, link in (ns.links.items() if ns else []):
            if link.peer is not None and link.peer[0] in self.ns:
                self.ns[link.peer[0]].links.pop(link.peer[1], None)

    async def check_root(self) -> None:
        if not self.root:
            raise DataplaneError(NOT_ROOT)

    async def foreign_networks(self) -> list[tuple[str, str]]:
        return list(self.foreign)

    async def ensure_host(self, cfg: HostConfig) -> bool:
        await self.check_root()
        host = self.ns[HOST]
        created = names.HOST_BRIDGE not in host.links
        br = host.links.setdefault(names.HOST_BRIDGE, FakeLink("bridge"))
        br.up = True
        br.addrs.add(cfg.host_ip)
        return created

    async def remove_host(self, cfg: HostConfig, *, remove_bridge: bool) -> None:
        host = self.ns[HOST]
        if remove_bridge:
            host.links.pop(names.HOST_BRIDGE, None)
        elif names.HOST_BRIDGE in host.links:
            host.links[names.HOST_BRIDGE].addrs.discard(cfg.host_ip)

    async def ensure_node(self, node: NodeInfo, *, prefixlen: int, host: HostConfig) -> None:
        await self.check_root()
        ns = self.ns.setdefault(node.netns, FakeNetns())
        if node.host_ifname not in self.ns[HOST].links:
            self._del_link(node.netns, "eth0")
            self._veth((HOST, node.host_ifname), (node.netns, "eth0"))
        self.ns[HOST].links[node.host_ifname].master = names.HOST_BRIDGE
        self.ns[HOST].links[node.host_ifname].up = True
        ns.links["eth0"].addrs.add(node.underlay_ip)
        ns.links["eth0"].up = True
        ns.links["lo"].up = True
        ns.routes["0.0.0.0/0"] = host.host_ip
        ns.links.setdefault(names.NODE_BRIDGE, FakeLink("bridge", up=True)).addrs.add(node.gateway)
        ns.links.setdefault(node.svc_ifname, FakeLink("bridge", up=True))
        ns.forwarding = True

    async def remove_node(self, node: NodeInfo) -> None:
        self._del_link(HOST, node.host_ifname)
        self._del_netns(node.netns)

    async def set_routes(self, netns: str | None, wanted: dict[str, str], *,
                         remove: list[str] | None = None) -> None:
        ns = self._get(netns or HOST)
        keep = {k: v for k, v in ns.routes.items() if (k == "0.0.0.0/0" and netns is not None)
                or (remove is not None and k not in remove)}
        ns.routes = {**keep, **wanted}

    async def ensure_pod(self, node: NodeInfo, pod: PodNet, *, prefixlen: int) -> None:
        await self.check_root()
        nodens = self._get(node.netns)
        ns = self.ns.setdefault(pod.netns, FakeNetns())
        self._step("pod:netns")
        if pod.host_ifname not in nodens.links or names.POD_IFNAME not in ns.links:
            self._del_link(node.netns, pod.host_ifname)
            self._veth((node.netns, pod.host_ifname), (pod.netns, names.POD_IFNAME))
        nodens.links[pod.host_ifname].master = names.NODE_BRIDGE
        nodens.links[pod.host_ifname].up = True
        self._step("pod:veth")
        eth = ns.links[names.POD_IFNAME]
        eth.addrs = {pod.ip}
        eth.up = ns.links["lo"].up = True
        ns.routes["0.0.0.0/0"] = pod.gateway

    async def remove_pod(self, node: NodeInfo, pod: PodNet, *, node_going: bool = False) -> None:
        self._del_link(node.netns, pod.host_ifname)
        self._del_netns(pod.netns)

    async def set_address(self, netns: str, ifname: str, ip: str, *, present: bool) -> None:
        link = self._get(netns).links.get(ifname)
        if link is None:
            raise KernelObjectMissing(f"netns {netns}: no device {ifname}; ensure the node again")
        (link.addrs.add if present else link.addrs.discard)(ip)

    async def addresses(self, netns: str, ifname: str) -> list[str]:
        link = self._get(netns).links.get(ifname)
        return sorted(link.addrs) if link else []

    async def close(self) -> None:
        return None


class FakeDataplane(RecordedDataplane):
    """The Dataplane over a FakeKernel; `state_dir` holds the record and IPAM files."""

    def __init__(self, state_dir: str | Path, *, kernel: FakeKernel | None = None) -> None:
        self.fake = kernel or FakeKernel()
        super().__init__(state_dir, kernel=self.fake)
