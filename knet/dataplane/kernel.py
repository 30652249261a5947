"""The `Kernel` seam under the dataplane: a few coarse, idempotent kernel operations.

`RecordedDataplane` (core.py) owns the semantics (names, IPAM, the record, errors) and
calls these; `NetlinkKernel` does them with pyroute2 and `FakeKernel` in memory. Coarse
steps ("make this pod's sandbox") keep the netlink side free to batch its calls, and keep
both twins honest: the same contract tests drive them through the same core.
"""

from __future__ import annotations

from typing import Protocol

from knet.dataplane.base import HostConfig, NodeInfo, PodNet

__all__ = ["RTPROT_KNET", "UNREACHABLE_METRIC", "Kernel"]

RTPROT_KNET = 77          # rtm_protocol of every route knet makes: tells them from others'
UNREACHABLE_METRIC = 4242  # host catch-all for pod/service CIDRs; real routes have metric 0


class Kernel(Protocol):
    async def check_root(self) -> None:
        """Raise DataplaneError(NOT_ROOT) if netlink changes are not permitted."""

    async def foreign_networks(self) -> list[tuple[str, str]]:
        """IPv4 networks of the host's own routes and addresses, minus knet's: (cidr, what)."""

    async def ensure_host(self, cfg: HostConfig) -> bool:
        """knet0 with host_ip, unreachable routes for pod and service CIDRs; True if knet0
        was created now."""

    async def remove_host(self, cfg: HostConfig, *, remove_bridge: bool) -> None: ...

    async def ensure_node(self, node: NodeInfo, *, prefixlen: int, host: HostConfig) -> None:
        """netns, underlay veth, eth0 address, default route, cni0, knet-svc, ip_forward."""

    async def remove_node(self, node: NodeInfo) -> None: ...

    async def set_routes(self, netns: str | None, wanted: dict[str, str], *,
                         remove: list[str] | None = None) -> None:
        """Make knet's unicast routes (dst -> via) of `netns` (None: host) be `wanted`, and
        remove the others (remove=None) or only those to the `remove` destinations."""

    async def ensure_pod(self, node: NodeInfo, pod: PodNet, *, prefixlen: int) -> None:
        """Pod netns, veth (node end on cni0, pod end eth0), address, lo up, default route;
        repairs whatever part is missing."""

    async def remove_pod(self, node: NodeInfo, pod: PodNet, *, node_going: bool = False) -> None:
        """Remove the pod's veth and netns. With `node_going`, leave the veth to die with the
        node netns (the kernel then deletes all of them in one batch)."""

    async def set_address(self, netns: str, ifname: str, ip: str, *, present: bool) -> None:
        """Add (present) or remove a /32 on `ifname` in `netns`."""

    async def addresses(self, netns: str, ifname: str) -> list[str]:
        """/32 addresses on `ifname` in `netns` (bare IPs)."""

    async def close(self) -> None: ...
