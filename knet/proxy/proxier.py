"""The Proxier: one per node, turns the ServicePort table into listeners and balancers.

It is the `ConfigTracker` of config.py (both handler protocols); every applied table is
diffed against the listeners it has: a listener per ClusterIP:port and per node IP:NodePort
(TCP, UDP, or the L7 HTTP path for `appProtocol: http`), opened inside the node's netns.
Endpoint changes only touch the balancer; a listener is reopened only when its shape
(address, port, protocol, kind) changes. A port without usable endpoints is refused the
way kube-proxy's rules do it (no listener: REJECT; a drop-all socket filter: DROP;
refusals.py), and re-served as soon as endpoints come. ClusterIPs are asked of the
`AddressManager` (the dataplane puts them as /32s on the node's address-only device). Traffic from outside
(NodePorts, LoadBalancer addresses, externalIPs; source ranges, health checks, host-side
announcements) is external.py's and externalsync.py's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Protocol

from knet.proxy.balancer import ROUND_ROBIN, Clock, Endpoint, LoadBalancer, SystemClock
from knet.proxy.config import ConfigTracker, ServicePort, ServiceTable
from knet.proxy.external import ExternalView
from knet.proxy.externalsync import ExternalSync, RouteAnnouncer
from knet.proxy.flows import FlowRing
from knet.proxy.healthcheck import HealthChecks
from knet.proxy.http import HttpListener
from knet.proxy.refusals import (
    RefusalWatch,
    Refused,
    attach_drop_all,
    detach_filter,
    listener_fileno,
)
from knet.proxy.sockets import SocketMaker
from knet.proxy.tcp import ProxyContext, TcpListener
from knet.proxy.topology import DROP, REJECT, SERVE
from knet.proxy.udp import UdpListener

log = logging.getLogger(__name__)

__all__ = ["AddressManager", "Proxier", "StaticAddresses"]

Listener = TcpListener | UdpListener | HttpListener
ListenKey = tuple[str, str, int]  # (protocol, ip, port)


class AddressManager(Protocol):
    async def add_service_ip(self, ip: str) -> None: ...
    async def remove_service_ip(self, ip: str) -> None: ...


class StaticAddresses:
    """An AddressManager for addresses that are already there (127.0.0.x in tests)."""

    def __init__(self) -> None:
        self.ips: set[str] = set()

    async def add_service_ip(self, ip: str) -> None:
        self.ips.add(ip)

    async def remove_service_ip(self, ip: str) -> None:
        self.ips.discard(ip)


class Proxier(ConfigTracker):
    def __init__(self, node_name: str, *, netns: str | None = None,
                 node_ips: Iterable[str] = (), address_manager: AddressManager | None = None,
                 flow_ring: FlowRing | None = None, clock: Clock | None = None,
                 udp_idle_timeout: float = 0.25, http_retries: int = 2,
                 http_timeout: float = 15.0, dial_timeouts: tuple[float, ...] | None = None,
                 half_close_timeout: float = 10.0, delay: float = 0.05,
                 algorithm: str = ROUND_ROBIN, routes: RouteAnnouncer | None = None) -> None:
        super().__init__(apply=self._apply, delay=delay, node=node_name)
        self.node_name = node_name
        self.node_ips = tuple(node_ips)
        self.addresses = address_manager or StaticAddresses()
        self.ring = flow_ring if flow_ring is not None else FlowRing()
        self.balancer = LoadBalancer(clock=clock or SystemClock(), algorithm=algorithm)
        self.ctx = ProxyContext(node=node_name, balancer=self.balancer, ring=self.ring,
                                sockets=SocketMaker(netns), half_close_timeout=half_close_timeout)
        if dial_timeouts is not None:
            self.ctx.dial_timeouts = dial_timeouts
        self.udp_idle_timeout = udp_idle_timeout
        self.http_retries, self.http_timeout = http_retries, http_timeout
        self.listeners: dict[ListenKey, Listener] = {}
        self.service_ips: set[str] = set()
        self.external = ExternalView(node_name, self.node_ips)   # LoadBalancer, externalIPs
        self.external_sync = ExternalSync(self.external, HealthChecks(
            self.ctx.sockets, self.node_ips), routes)
        self.dropping: set[ListenKey] = set()  # listeners with the drop-all filter on
        self.refusals = RefusalWatch(node=node_name, sockets=self.ctx.sockets,
                                     emit=self.ctx.emit)

    def __repr__(self) -> str:
        return (f"<Proxier {self.node_name} {len(self.table)} service ports "
                f"{len(self.listeners)} listeners>")

    def _desired(self, table: ServiceTable) -> dict[ListenKey, ServicePort]:
        want: dict[ListenKey, ServicePort] = {}
        for sp in table.values():  # sorted by key: the first service keeps a contested port
            ext = sp.external_side()
            addrs = [(sp, sp.cluster_ip, sp.port)]
            addrs += [(ext, ip, port) for ip, port in self.external.addresses(sp)]
            for side, ip, port in addrs:
                lk = (sp.protocol, ip, port)
                if lk in want:
                    log.error("%s: %s %s:%d is already served by %s; this port is not served "
                              "(give the service another port or nodePort)", sp.key,
                              sp.protocol, ip, port, want[lk].key)
                    continue
                want[lk] = side
        return want

    def _verdict(self, sp: ServicePort) -> str:
        """SERVE, REJECT or DROP; a port the mesh routes is always served (its L7 path may
        send requests to another Service's endpoints)."""
        mesh = self.ctx.mesh
        if sp.verdict != SERVE and mesh is not None and sp.key in mesh.table.ports:
            return SERVE
        return sp.verdict

    async def _apply(self, table: ServiceTable) -> None:
        self.external.update(self._services, self._slices.values())
        keys = set()
        for sp in table.values():
            for side in {sp, sp.external_side()}:
                keys.add(side.key)
                self.balancer.update(side.key, side.endpoints, algorithm=side.algorithm,
                                     affinity_seconds=side.affinity_seconds)
        for key in set(self.balancer.keys()) - keys:
            self.balancer.remove(key)
        self.balancer.sweep()
        want = self._desired(table)
        verdicts = {lk: self._verdict(sp) for lk, sp in want.items()}
        self.refusals.update({lk: Refused(want[lk], v) for lk, v in verdicts.items()
                              if v != SERVE})
        want = {lk: sp for lk, sp in want.items() if verdicts[lk] != REJECT}
        for lk, ln in list(self.listeners.items()):
            new = want.get(lk)
            if new is None or new.listen_shape() != ln.sp.listen_shape() or new.key != ln.sp.key:
                del self.listeners[lk]
                self.dropping.discard(lk)
                await ln.close()
            else:
                ln.sp = new
                if isinstance(ln, UdpListener):
                    self._end_stale_flows(ln)
        ips = {sp.cluster_ip for sp in table.values()} | self.external.service_ips()
        for ip in sorted(ips - self.service_ips):
            await self.addresses.add_service_ip(ip)
        for lk, sp in want.items():
            if lk not in self.listeners:
                await self._open(lk, sp)
            self._filter(lk, drop=verdicts[lk] == DROP)
        for ip in sorted(self.service_ips - ips):
            await self.addresses.remove_service_ip(ip)
        self.service_ips = ips
        await self.external_sync.sync(self.listeners, self.dropping)
        log.info("%s: %d service ports, %d listeners", self.node_name, len(table),
                 len(self.listeners))

    @staticmethod
    def _end_stale_flows(ln: UdpListener) -> None:
        """UDP flows to an endpoint that is gone end now (kube-proxy deletes their conntrack
        entries), so a client that never pauses moves to a live endpoint at once."""
        alive = set(ln.sp.endpoints)
        for flow in list(ln.flows.values()):
            if Endpoint(flow.rec.endpoint_ip, flow.rec.endpoint_port) not in alive:
                ln.end(flow)

    def _filter(self, lk: ListenKey, *, drop: bool) -> None:
        """Put the drop-all filter on the listener (DROP) or take it off."""
        ln = self.listeners.get(lk)
        if ln is None or drop == (lk in self.dropping):
            return
        fd = listener_fileno(ln)
        if fd is None:
            return
        try:
            (attach_drop_all if drop else detach_filter)(fd)
        except OSError as exc:
            log.error("%s: cannot %s the drop filter on %s %s:%d: %s", ln.sp.key,
                      "attach" if drop else "detach", *lk, exc)
            return
        (self.dropping.add if drop else self.dropping.discard)(lk)

    async def _open(self, lk: ListenKey, sp: ServicePort) -> None:
        protocol, ip, port = lk
        ln: Listener
        if protocol == "UDP":
            ln = UdpListener(self.ctx, sp, ip=ip, port=port, idle_timeout=self.udp_idle_timeout)
        elif sp.is_http or (self.ctx.mesh is not None and sp.key in self.ctx.mesh.table.ports):
            ln = HttpListener(self.ctx, sp, ip=ip, port=port, retries=self.http_retries,
                              timeout=self.http_timeout)
        else:
            ln = TcpListener(self.ctx, sp, ip=ip, port=port)
        self.dropping.discard(lk)  # a new socket has no filter yet
        try:
            await ln.start()
        except OSError as exc:
            log.error("%s: cannot listen on %s %s:%d: %s; the port stays unserved until the "
                      "service changes", sp.key, protocol, ip, port, exc.strerror or exc)
            return
        self.listeners[lk] = ln

    async def stop(self) -> None:
        """Close every listener and give back the service IPs."""
        self.cancel()
        await self.external_sync.stop()
        self.refusals.close()
        for ln in list(self.listeners.values()):
            await ln.close()
        self.listeners.clear()
        for ip in sorted(self.service_ips):
            await self.addresses.remove_service_ip(ip)
        self.service_ips = set()
        self.ctx.sockets.close()
        await asyncio.sleep(0)
