"""`RecordedDataplane`: the Dataplane semantics over a `Kernel` (netlink or fake).

Everything a caller can rely on lives here, once: input validation, name derivation, IPAM,
the record (written *before* the kernel objects, so a crash half-way leaves a record that the
next call repairs or cleanup removes), host routes derived from the recorded nodes, and the
errors users see. The kernel twins only make and remove objects. A pod's record is its IPAM
entry: its netns, veth and MAC all follow from (node, key, address), so one atomic write
per pod records it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from pathlib import Path

from control.addresses import HOST_IP, POD_CIDR, SERVICE_CIDR, UNDERLAY_CIDR
from knet.dataplane import names
from knet.dataplane.base import HostConfig, NodeInfo, NodeSpec, PodNet
from knet.dataplane.ipam import Ipam
from knet.dataplane.kernel import Kernel
from knet.dataplane.state import Records
from knet.errors import KernelObjectMissing, UsageError

__all__ = ["RecordedDataplane"]

log = logging.getLogger(__name__)


def _net(cidr: str, what: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(cidr, strict=True)
    except ValueError as exc:
        raise UsageError(f"{what} {cidr!r}: invalid IPv4 network ({exc})") from None


def _ip(addr: str, what: str) -> str:
    try:
        return str(ipaddress.IPv4Address(addr))
    except ValueError:
        raise UsageError(f"{what} {addr!r}: invalid IPv4 address") from None


class RecordedDataplane:
    """Implements `Dataplane`; see base.py for the calls and their guarantees."""

    def __init__(self, state_dir: str | Path, *, kernel: Kernel) -> None:
        self.records = Records(state_dir)
        self.kernel = kernel
        self._ipams: dict[str, Ipam] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.records.root}>"

    def _lock(self, node: str) -> asyncio.Lock:
        return self._locks.setdefault(node, asyncio.Lock())

    def _host(self) -> HostConfig:
        rec = self.records.host()
        if rec is None:
            raise KernelObjectMissing(
                "host: knet0 is not set up; call ensure_host() first ('knet up')")
        return rec[0]

    def _node(self, name: str) -> NodeInfo:
        names.validate_node_name(name)
        info = self.records.node(name)
        if info is None:
            raise KernelObjectMissing(
                f"node {name}: not set up by this dataplane; ensure_node() it first")
        return info

    def _ipam(self, node: NodeInfo) -> Ipam:
        ipam = self._ipams.get(node.name)
        if ipam is None:
            ipam = self._ipams[node.name] = self.records.ipam(node.name, node.pod_cidr)
        else:
            ipam.refresh()
        return ipam

    async def ensure_host(self, *, underlay_cidr: str = UNDERLAY_CIDR,
                          host_ip: str = HOST_IP, pod_cidr: str = POD_CIDR,
                          service_cidr: str = SERVICE_CIDR) -> HostConfig:
        nets = {"underlay CIDR": _net(underlay_cidr, "underlay CIDR"),
                "pod CIDR": _net(pod_cidr, "pod CIDR"),
                "service CIDR": _net(service_cidr, "service CIDR")}
        if ipaddress.IPv4Address(_ip(host_ip, "host IP")) not in nets["underlay CIDR"]:
            raise UsageError(f"host IP {host_ip}: not inside underlay CIDR {underlay_cidr}")
        items = list(nets.items())
        for i, (a, na) in enumerate(items):
            for b, nb in items[i + 1:]:
                if na.overlaps(nb):
                    raise UsageError(f"{a} {na} overlaps {b} {nb}; choose disjoint ranges")
        await self.kernel.check_root()
        for cidr, what in await self.kernel.foreign_networks():
            for label, net in nets.items():
                if net.overlaps(ipaddress.IPv4Network(cidr, strict=False)):
                    raise UsageError(
                        f"{label} {net} overlaps the host's own {what}; knet's ranges are fixed "
                        "in this version: run it in a private network namespace instead "
                        "('knet sandbox -- knet demo', or the lab container)")
        cfg = HostConfig(underlay_cidr=underlay_cidr, host_ip=host_ip, pod_cidr=pod_cidr,
                         service_cidr=service_cidr)
        prev = self.records.host()
        if prev is not None and prev[0] != cfg:
            raise UsageError(f"host: already set up with {prev[0]}; run 'knet down' first")
        created_before = prev[1] if prev is not None else None
        self.records.put_host(cfg, created_bridge=bool(created_before))
        created = await self.kernel.ensure_host(cfg)
        self.records.put_host(cfg, created_bridge=bool(created_before) or created)
        await self._sync_host_routes()
        return cfg

    async def _sync_host_routes(self, *, removed: NodeInfo | None = None) -> None:
        """Host routes to each recorded node's pods, and to Services via the first node.
        Agents of several nodes share the host: each adds, and removes only its own."""
        host = self.records.host()
        if host is None:
            return
        nodes = sorted(self.records.nodes(), key=lambda n: n.name)
        wanted = {n.pod_cidr: n.underlay_ip for n in nodes}
        if nodes:
            wanted[host[0].service_cidr] = nodes[0].underlay_ip
        drop = [] if removed is None else [removed.pod_cidr]
        if not nodes:
            drop.append(host[0].service_cidr)
        await self.kernel.set_routes(None, wanted, remove=drop)

    async def ensure_node(self, spec: NodeSpec) -> NodeInfo:
        spec.validate()
        host = self._host()
        if ipaddress.IPv4Address(spec.underlay_ip) not in ipaddress.IPv4Network(host.underlay_cidr):
            raise UsageError(f"node {spec.name}: underlay IP {spec.underlay_ip} is outside "
                             f"{host.underlay_cidr}")
        if not ipaddress.IPv4Network(spec.pod_cidr).subnet_of(ipaddress.IPv4Network(host.pod_cidr)):
            raise UsageError(f"node {spec.name}: pod CIDR {spec.pod_cidr} is outside the cluster "
                             f"pod CIDR {host.pod_cidr}")
        info = NodeInfo(name=spec.name, netns=names.node_netns(spec.name),
                        underlay_ip=spec.underlay_ip, pod_cidr=spec.pod_cidr,
                        gateway=spec.gateway, host_ifname=names.node_host_ifname(spec.name),
                        svc_ifname=names.SVC_IFNAME, mtu=spec.mtu)
        for other in self.records.nodes():
            if other.name == info.name:
                if other != info:
                    raise UsageError(f"node {spec.name}: already exists as {other!r}; delete it "
                                     "first")
                continue
            if other.underlay_ip == info.underlay_ip or ipaddress.IPv4Network(
                    other.pod_cidr).overlaps(ipaddress.IPv4Network(info.pod_cidr)):
                raise UsageError(f"node {spec.name}: underlay IP or pod CIDR clashes with node "
                                 f"{other.name} ({other.underlay_ip}, {other.pod_cidr})")
        async with self._lock(spec.name):
            self.records.put_node(info)
            await self.kernel.ensure_node(info, prefixlen=spec.underlay_prefixlen, host=host)
            await self.kernel.set_routes(info.netns, self.records.node_routes(info.name))
            self._ipam(info)
        await self._sync_host_routes()
        log.info("%s: node ready (%s, pods %s)", info.name, info.underlay_ip, info.pod_cidr)
        return info

    async def ensure_node_routes(self, node: str, peers: list[NodeSpec]) -> None:
        info = self._node(node)
        wanted: dict[str, str] = {}
        for peer in peers:
            peer.validate()
            if peer.name != node:
                wanted[peer.pod_cidr] = peer.underlay_ip
        async with self._lock(node):
            self.records.put_node_routes(node, wanted)
            await self.kernel.set_routes(info.netns, wanted)

    @staticmethod
    def _podnet(info: NodeInfo, pod_key: str, ip: str) -> PodNet:
        """Everything about a pod's sandbox follows from (node, key, address)."""
        return PodNet(key=pod_key, netns=names.pod_netns(info.name, pod_key), ip=ip,
                      gateway=info.gateway, host_ifname=names.pod_host_ifname(info.name, pod_key),
                      node=info.name, mac=names.pod_mac(ip))

    async def ensure_pod(self, node: str, pod_key: str, *, ip: str | None = None) -> PodNet:
        names.validate_pod_key(pod_key)
        info = self._node(node)
        async with self._lock(node):
            ipam = self._ipam(info)
            # the IPAM entry, saved before any kernel object, is the pod's record
            pod = self._podnet(info, pod_key, ipam.allocate(pod_key, ip=ip))
            await self.kernel.ensure_pod(info, pod, prefixlen=ipam.network.prefixlen)
        log.debug("%s: pod sandbox ready on %s (%s)", pod_key, node, pod.ip)
        return pod

    async def record_pod(self, node: str, pod_key: str, ip: str) -> PodNet:
        """Record a sandbox someone else wired (a CNI plugin) in netns `pod_netns(node, key)`:
        its IPAM entry, so that delete_pod and cleanup remove its netns like any pod's."""
        names.validate_pod_key(pod_key)
        info = self._node(node)
        async with self._lock(node):
            return self._podnet(info, pod_key, self._ipam(info).allocate(pod_key, ip=ip))

    async def delete_pod(self, node: str, pod_key: str) -> None:
        names.validate_pod_key(pod_key)
        info = self.records.node(names.validate_node_name(node))
        if info is None:
            return
        async with self._lock(node):
            ipam = self._ipam(info)
            addr = ipam.get(pod_key)
            if addr is None:
                return
            await self.kernel.remove_pod(info, self._podnet(info, pod_key, addr))
            ipam.release(pod_key)
        log.debug("%s: pod sandbox removed from %s", pod_key, node)

    def _pods(self, info: NodeInfo) -> list[PodNet]:
        held = self._ipam(info).held()
        return [self._podnet(info, key, held[key]) for key in sorted(held)]

    async def delete_node(self, name: str) -> None:
        info = self.records.node(names.validate_node_name(name))
        if info is None:
            return
        async with self._lock(name):
            ipam = self._ipam(info)
            for pod in self._pods(info):
                await self.kernel.remove_pod(info, pod, node_going=True)
                ipam.release(pod.key)
            await self.kernel.remove_node(info)
            ipam.destroy()
            self._ipams.pop(name, None)
            self.records.drop_node(name)
        await self._sync_host_routes(removed=info)
        log.info("%s: node removed", name)

    async def add_service_ip(self, node: str, ip: str) -> None:
        info = self._node(node)
        await self.kernel.set_address(info.netns, info.svc_ifname, _ip(ip, "service IP"),
                                      present=True)

    async def remove_service_ip(self, node: str, ip: str) -> None:
        info = self.records.node(names.validate_node_name(node))
        if info is not None:
            await self.kernel.set_address(info.netns, info.svc_ifname, _ip(ip, "service IP"),
                                          present=False)

    async def list_service_ips(self, node: str) -> list[str]:
        info = self._node(node)
        return sorted(await self.kernel.addresses(info.netns, info.svc_ifname),
                      key=ipaddress.IPv4Address)

    async def list_pods(self, node: str) -> list[PodNet]:
        return self._pods(self._node(node))

    async def list_nodes(self) -> list[NodeInfo]:
        return self.records.nodes()

    async def cleanup(self) -> None:
        for info in self.records.nodes():
            await self.delete_node(info.name)
        host = self.records.host()
        if host is not None:
            await self.kernel.remove_host(host[0], remove_bridge=host[1])
            self.records.drop_host()
        log.info("dataplane: everything recorded is removed")

    async def close(self) -> None:
        await self.kernel.close()
