"""The `Dataplane` seam: what a kubelet asks of the network, and the values it gets back.

How a kubelet uses it (every call is idempotent and safe to repeat after a crash):

    dp = NetlinkDataplane(state_dir)               # or FakeDataplane(state_dir) in unit tests
    await dp.ensure_host()                          # once per host: bridge knet0, host routes
    spec = NodeSpec.default(1)                      # node-1, 172.18.0.2, 10.244.1.0/24
    node = await dp.ensure_node(spec)               # netns knet-node-1, eth0, cni0, knet-svc
    await dp.ensure_node_routes("node-1", [NodeSpec.default(2)])   # host-gw to other nodes
    pod = await dp.ensure_pod("node-1", "default/web-1")           # PodNet(ip=10.244.1.2 ...)
    # the runtime enters pod.netns_path to start containers
    await dp.add_service_ip("node-1", "10.96.0.10")                # ClusterIP on knet-svc
    await dp.delete_pod("node-1", "default/web-1")
    await dp.cleanup(); await dp.close()            # remove everything recorded, nothing else

Errors are knet.errors: UsageError (bad name/CIDR), KernelObjectMissing (e.g. node not ensured),
Exhausted (pod CIDR full), DataplaneError (kernel said no, or not root). Each names the
object and the way out. Values are frozen dataclasses; `repr()` shows real state.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from control.addresses import HOST_IP, POD_CIDR, SERVICE_CIDR, UNDERLAY_CIDR
from knet.dataplane import names
from knet.errors import UsageError

__all__ = [
    "NETNS_DIR",
    "NOT_ROOT",
    "Dataplane",
    "HostConfig",
    "NodeInfo",
    "NodeSpec",
    "PodNet",
]

NETNS_DIR = "/run/netns"
NOT_ROOT = "knet dataplane needs root (CAP_NET_ADMIN): run as root or in a privileged container"


@dataclass(frozen=True)
class NodeSpec:
    """What a node should be. `underlay_ip` is bare (no prefix); `pod_cidr` is its /24."""

    name: str
    index: int
    underlay_ip: str
    pod_cidr: str
    underlay_prefixlen: int = 16
    mtu: int = 1500                 # pods' eth0 and cni0 (1450 on the VXLAN overlay)

    @classmethod
    def default(cls, index: int, *, name: str | None = None,
                underlay_cidr: str = UNDERLAY_CIDR, pod_cidr: str = POD_CIDR,
                pod_prefixlen: int = 24, mtu: int = 1500) -> NodeSpec:
        """Defaults for node i: node-i, 172.18.0.(i+1), 10.244.i.0/24 (gateway 10.244.i.1)."""
        if index < 1:
            raise UsageError(f"node index {index}: must be 1 or more")
        under = ipaddress.IPv4Network(underlay_cidr)
        pods = ipaddress.IPv4Network(pod_cidr)
        subnets = pods.subnets(new_prefix=pod_prefixlen)
        step = 2 ** (pod_prefixlen - pods.prefixlen)
        if index >= step or index + 1 >= under.num_addresses - 1:
            raise UsageError(f"node index {index}: does not fit in {pod_cidr} / {underlay_cidr}")
        sub = next(s for i, s in enumerate(subnets) if i == index)
        return cls(name=name or f"node-{index}", index=index,
                   underlay_ip=str(under.network_address + index + 1), pod_cidr=str(sub),
                   underlay_prefixlen=under.prefixlen, mtu=mtu)

    @property
    def gateway(self) -> str:
        """The pods' default gateway: first host of the pod CIDR (on cni0)."""
        return str(ipaddress.IPv4Network(self.pod_cidr).network_address + 1)

    @property
    def netns(self) -> str:
        return names.node_netns(self.name)

    def validate(self) -> NodeSpec:
        """Raise UsageError naming the node if a field is malformed; return self."""
        names.validate_node_name(self.name)
        try:
            ipaddress.IPv4Address(self.underlay_ip)
            net = ipaddress.IPv4Network(self.pod_cidr, strict=True)
        except ValueError as exc:
            raise UsageError(f"node {self.name}: {exc}; underlay_ip is a bare IPv4 address "
                             "and pod_cidr a network such as 10.244.1.0/24") from None
        if not 576 <= self.mtu <= 9000:
            raise UsageError(f"node {self.name}: MTU {self.mtu} is outside 576..9000")
        if net.prefixlen > 29:
            raise UsageError(f"node {self.name}: pod CIDR {self.pod_cidr} is too small; use /29 "
                             "or larger")
        return self


@dataclass(frozen=True)
class HostConfig:
    """The host side (recorded by ensure_host)."""

    underlay_cidr: str = UNDERLAY_CIDR
    host_ip: str = HOST_IP
    pod_cidr: str = POD_CIDR
    service_cidr: str = SERVICE_CIDR


@dataclass(frozen=True)
class NodeInfo:
    """A node as made: its netns, underlay address, pod CIDR and devices."""

    name: str
    netns: str
    underlay_ip: str
    pod_cidr: str
    gateway: str
    host_ifname: str
    svc_ifname: str
    mtu: int = 1500

    def __repr__(self) -> str:
        return f"<Node {self.name} {self.underlay_ip} {self.pod_cidr} netns={self.netns}>"

    @property
    def netns_path(self) -> str:
        return f"{NETNS_DIR}/{self.netns}"


@dataclass(frozen=True)
class PodNet:
    """A pod sandbox as made: enter `netns_path` to run its containers."""

    key: str
    netns: str
    ip: str
    gateway: str
    host_ifname: str
    node: str
    mac: str

    def __repr__(self) -> str:
        return f"<Pod {self.key} {self.ip} {self.node} netns={self.netns}>"

    @property
    def netns_path(self) -> str:
        return f"{NETNS_DIR}/{self.netns}"


@runtime_checkable
class Dataplane(Protocol):
    """Builds nodes and pods out of network namespaces. `ensure_*` is idempotent, `delete_*`
    is a no-op when the object is gone, `cleanup` removes exactly what was recorded."""

    async def ensure_host(self, *, underlay_cidr: str = UNDERLAY_CIDR,
                          host_ip: str = HOST_IP, pod_cidr: str = POD_CIDR,
                          service_cidr: str = SERVICE_CIDR) -> HostConfig: ...

    async def ensure_node(self, spec: NodeSpec) -> NodeInfo: ...

    async def ensure_node_routes(self, node: str, peers: list[NodeSpec]) -> None: ...

    async def ensure_pod(self, node: str, pod_key: str, *, ip: str | None = None) -> PodNet: ...

    async def delete_pod(self, node: str, pod_key: str) -> None: ...

    async def delete_node(self, name: str) -> None: ...

    async def add_service_ip(self, node: str, ip: str) -> None: ...

    async def remove_service_ip(self, node: str, ip: str) -> None: ...

    async def list_service_ips(self, node: str) -> list[str]: ...

    async def list_pods(self, node: str) -> list[PodNet]: ...

    async def list_nodes(self) -> list[NodeInfo]: ...

    async def cleanup(self) -> None: ...

    async def close(self) -> None: ...
