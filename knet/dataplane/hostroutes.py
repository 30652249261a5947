"""LoadBalancer addresses announced on the host side: a /32 route in the host netns to the
announcing node's underlay address (`172.18.255.1 via 172.18.0.3 dev knet0 proto 77`).

This is knet's layer-2 announcement (MetalLB's L2 mode answers ARP from one node; here the
host, the one neighbour on the underlay, is told directly, so no ARP for the address is ever
needed and the node never answers for addresses it does not announce). Each node's kube-proxy
announces only its own addresses and withdraws a route only while it still points at its
node (`del` with the gateway given matches that route alone), so a hand-over from one node
to another never leaves the host without a route or with a stale one. Every announcement is
recorded (dataplane/lbroutes/NODE.json) before it is made: a restarted proxy withdraws what
its previous run left, and `withdraw_all` removes exactly what the record names.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
from pathlib import Path

from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

from knet.dataplane.aioiproute import KnetIPRoute
from knet.dataplane.ipam import write_json_atomic
from knet.dataplane.kernel import RTPROT_KNET
from knet.errors import DataplaneError

__all__ = ["FakeHostRoutes", "HostRoutes"]

log = logging.getLogger(__name__)
_GONE = (errno.ESRCH, errno.ENOENT, errno.ENODEV, errno.EADDRNOTAVAIL)


def _host(ip: str) -> str:
    return f"{ipaddress.IPv4Address(ip)}/32"


class HostRoutes:
    """Announce/withdraw LoadBalancer addresses of node `node` in this (the host) netns."""

    def __init__(self, state_dir: str | Path, node: str) -> None:
        self.node = node
        self.path = Path(state_dir) / "lbroutes" / f"{node}.json"
        self._ipr: KnetIPRoute | None = None

    def __repr__(self) -> str:
        return f"<HostRoutes {self.node} {self.path}>"

    def recorded(self) -> dict[str, str]:
        """ip -> via of what this node announced and has not withdrawn."""
        try:
            return dict(json.loads(self.path.read_text()))
        except FileNotFoundError:
            return {}

    def _record(self, routes: dict[str, str]) -> None:
        write_json_atomic(self.path, dict(sorted(routes.items())))

    async def _sock(self) -> KnetIPRoute:
        if self._ipr is None:
            ipr = KnetIPRoute(groups=0)
            ipr.socket  # noqa: B018 - opens the socket in this netns
            await ipr.setup_endpoint()
            self._ipr = ipr
        return self._ipr

    async def announce(self, ip: str, via: str) -> None:
        routes = self.recorded()
        routes[ip] = via
        self._record(routes)
        ipr = await self._sock()
        try:
            await ipr.route("replace", dst=_host(ip), gateway=via, proto=RTPROT_KNET)
        except NetlinkError as exc:
            raise DataplaneError(f"host: route {ip}/32 via {via} (node {self.node}): "
                                 f"{exc}; is the node's underlay up ('knet up')?") from None
        log.info("%s: announcing %s on the host side (via %s)", self.node, ip, via)

    async def withdraw(self, ip: str, via: str) -> None:
        ipr = await self._sock()
        try:
            await ipr.route("del", dst=_host(ip), gateway=via, proto=RTPROT_KNET)
        except NetlinkError as exc:
            if exc.code not in _GONE:
                raise DataplaneError(f"host: route {ip}/32 via {via} (node {self.node}): "
                                     f"{exc}") from None
        routes = self.recorded()
        if routes.get(ip) == via:
            del routes[ip]
            self._record(routes)
        log.info("%s: withdrew %s from the host side", self.node, ip)

    async def withdraw_all(self) -> None:
        for ip, via in self.recorded().items():
            await self.withdraw(ip, via)

    async def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None


class FakeHostRoutes:
    """The host's route table for LoadBalancer addresses, in memory (one shared dict stands
    for the host: several nodes' announcers may share it, as on a real host)."""

    def __init__(self, node: str, table: dict[str, str] | None = None) -> None:
        self.node = node
        self.table: dict[str, str] = table if table is not None else {}
        self.mine: dict[str, str] = {}

    def recorded(self) -> dict[str, str]:
        return dict(self.mine)

    async def announce(self, ip: str, via: str) -> None:
        self.table[ip] = via
        self.mine[ip] = via

    async def withdraw(self, ip: str, via: str) -> None:
        if self.table.get(ip) == via:
            del self.table[ip]
        self.mine.pop(ip, None)

    async def withdraw_all(self) -> None:
        for ip, via in list(self.mine.items()):
            await self.withdraw(ip, via)

    async def close(self) -> None:
        return None
