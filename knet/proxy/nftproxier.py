"""The kernel proxy: kube-proxy's nftables mode for one node (`knet proxy --proxy-mode nftables`).

A `ConfigTracker` like the userspace `Proxier`, but nothing listens: every applied table is
compiled by `nftcompile.compile_sync` into one nftables transaction on the node's netns
(through `knet.dataplane.nft.Nft`), and the kernel DNATs Service traffic in prerouting/output.
Flow records come from conntrack (`ctflows.ConntrackFlows` fed by the dataplane's
`ConntrackWatch`). Traffic from outside is read from the same wire objects as the userspace
mode (external.py: LoadBalancer addresses, externalIPs, source ranges) and compiled into the
table; the healthCheckNodePort servers and the host-side announcements of LoadBalancer
addresses are externalsync.py's, as in the userspace mode. `stop()` deletes the table:
nothing of this mode outlives the process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from control.addresses import POD_CIDR
from knet.dataplane.conntrack import ConntrackWatch, CtEvent
from knet.dataplane.nflog import NflogReader
from knet.dataplane.nft import Nft
from knet.proxy.config import ConfigTracker, ServiceTable
from knet.proxy.ctflows import ConntrackFlows, stale_udp_endpoints
from knet.proxy.external import ExternalView
from knet.proxy.externalsync import ExternalSync, RouteAnnouncer
from knet.proxy.flows import FlowRing
from knet.proxy.healthcheck import HealthChecks
from knet.proxy.nftcompile import FAMILY, NFLOG_GROUP, TABLE, NftState, compile_sync
from knet.proxy.sockets import SocketMaker

log = logging.getLogger(__name__)

__all__ = ["EventSource", "NftProxier"]

DEFAULT_CLUSTER_CIDR = POD_CIDR


class EventSource(Protocol):
    """What feeds conntrack events and deletes entries (knet.dataplane.conntrack.ConntrackWatch,
    or a fake)."""
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def delete(self, match: Callable[[CtEvent], bool]) -> int: ...


class NftProxier(ConfigTracker):
    mode = "nftables"

    def __init__(self, node_name: str, *, nft: Nft, netns: str | None = None,
                 node_ips: Iterable[str] = (), flow_ring: FlowRing | None = None,
                 cluster_cidr: str = DEFAULT_CLUSTER_CIDR, conntrack: bool = True,
                 close_nft: bool = False, delay: float = 0.05,
                 routes: RouteAnnouncer | None = None) -> None:
        super().__init__(apply=self._apply, delay=delay, node=node_name)
        self.node_name, self.netns, self.nft = node_name, netns, nft
        self.close_nft = close_nft              # the proxier made `nft` and closes it at stop
        self.node_ips = tuple(node_ips)
        self.cluster_cidr = cluster_cidr
        self.ring = flow_ring if flow_ring is not None else FlowRing()
        self.flows = ConntrackFlows(node_name, self.ring, node_ips=self.node_ips)
        self._sockets: SocketMaker | None = None
        self.state: NftState | None = None      # None: the next sync makes the table anew
        self.syncs = 0
        self.watch: EventSource | None = None
        self.external = ExternalView(node_name, self.node_ips)   # LoadBalancer, externalIPs
        self.routes = routes
        self._external_sync: ExternalSync | None = None
        if conntrack:
            watch = ConntrackWatch(netns, lambda ev: self.flows.on_event(ev, watch.counters))
            self.watch = watch
            self.refusals: NflogReader | None = NflogReader(netns, NFLOG_GROUP)
        else:
            self.refusals = None

    def __repr__(self) -> str:
        return (f"<NftProxier {self.node_name} {len(self.table)} service ports "
                f"{self.syncs} syncs>")

    @property
    def sockets(self) -> SocketMaker:
        """Sockets in the node netns (the metrics listener), made on first use."""
        if self._sockets is None:
            self._sockets = SocketMaker(self.netns)
        return self._sockets

    @property
    def external_sync(self) -> ExternalSync:
        """Health check servers and announcements (made on first use: they need the netns)."""
        if self._external_sync is None:
            self._external_sync = ExternalSync(self.external, HealthChecks(
                self.sockets, self.node_ips), self.routes)
        return self._external_sync

    def start_flows(self) -> None:
        """Start reading conntrack events (needs the running loop)."""
        if self.watch is not None:
            try:
                self.watch.start()
            except OSError as exc:
                log.error("%s: conntrack events unavailable (%s); `knet flows` stays empty in "
                          "nftables mode", self.node_name, exc)
                self.watch = None
        if self.refusals is not None:
            try:
                self.refusals.start(self.flows.on_refused)
            except OSError as exc:
                log.error("%s: %s; refusals are not in the flow records", self.node_name, exc)
                self.refusals = None

    async def _apply(self, table: ServiceTable) -> None:
        self.external.update(self._services, self._slices.values())
        compiled = compile_sync(table, cluster_cidr=self.cluster_cidr, previous=self.state,
                                externals=self.external.by_service, node_ips=self.node_ips)
        try:
            await self.nft.apply(self.netns, compiled.commands)
        except OSError:
            self.state = None   # next sync starts from a fresh table
            raise
        self.state = compiled.state
        stale = stale_udp_endpoints(self.flows.table, table)
        self.flows.set_table(table, self.external.addresses)
        self.syncs += 1
        if self._external_sync is not None or self.routes is not None or self.external.health():
            await self.external_sync.sync({})  # healthCheckNodePorts, host-side announcements
        if stale and self.watch is not None:
            try:
                gone = self.watch.delete(lambda e: e.proto == 17 and e.dnat
                                         and (e.reply_src, e.reply_sport) in stale)
            except OSError as exc:
                log.error("%s: deleting stale UDP conntrack entries failed: %s; clients may "
                          "stay on gone endpoints until they pause", self.node_name, exc)
                return
            log.info("%s: %d UDP conntrack entries to gone endpoints deleted (%s)",
                     self.node_name, gone, ", ".join(f"{ip}:{port}" for ip, port in sorted(stale)))
        log.info("%s: nftables: %d service ports, %d chains, %d commands in one transaction",
                 self.node_name, len(table), len(compiled.state.chains), len(compiled.commands))

    async def stop(self) -> None:
        """Stop the flows and delete the table (the node keeps no rule of this proxy)."""
        self.cancel()
        if self.watch is not None:
            self.watch.stop()
        if self.refusals is not None:
            self.refusals.close()
        if self._external_sync is not None:
            await self._external_sync.stop()
        try:
            if await self.nft.delete_table(self.netns, FAMILY, TABLE):
                log.info("%s: nftables table %s %s deleted", self.node_name, FAMILY, TABLE)
        except OSError as exc:
            log.error("%s: deleting nftables table %s %s failed: %s; 'knet down' removes the "
                      "node's netns with it", self.node_name, FAMILY, TABLE, exc)
        self.state = None
        if self._sockets is not None:
            self._sockets.close()
        close = getattr(self.nft, "close", None)
        if self.close_nft and close is not None:
            close()
        await asyncio.sleep(0)
