"""After each applied table, the side effects of external traffic on one node: the
source-range filters on LoadBalancer listeners (sourceranges.py), the healthCheckNodePort
servers (healthcheck.py) and this node's host-side announcements (a `RouteAnnouncer`:
knet/dataplane/hostroutes.py, or its fake). Each is diffed against what was done last, so
an unchanged table costs nothing; a restarted proxy first withdraws what its previous run
announced and no longer should."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Protocol

from knet.proxy.external import ExternalView
from knet.proxy.healthcheck import HealthChecks
from knet.proxy.refusals import listener_fileno
from knet.proxy.sourceranges import detach, restrict

log = logging.getLogger(__name__)

__all__ = ["ExternalSync", "RouteAnnouncer"]

ListenKey = tuple[str, str, int]  # (protocol, ip, port)


class RouteAnnouncer(Protocol):
    def recorded(self) -> dict[str, str]: ...
    async def announce(self, ip: str, via: str) -> None: ...
    async def withdraw(self, ip: str, via: str) -> None: ...
    async def close(self) -> None: ...


class ExternalSync:
    def __init__(self, view: ExternalView, health: HealthChecks,
                 routes: RouteAnnouncer | None) -> None:
        self.view, self.health, self.routes = view, health, routes
        self.filters: dict[ListenKey, tuple[int, tuple[str, ...]]] = {}  # by listener fd
        self.announced: dict[str, str] | None = None   # None: not read from the record yet

    def __repr__(self) -> str:
        return f"<ExternalSync {len(self.filters)} filtered, {len(self.announced or {})} announced>"

    async def sync(self, listeners: Mapping[ListenKey, object],
                   dropping: AbstractSet[ListenKey] = frozenset()) -> None:
        """`dropping`: listeners carrying the proxier's drop-all filter (refusals.py): left
        to it; their source-range filter is put back once it is taken off."""
        self._filters({lk: ln for lk, ln in listeners.items() if lk not in dropping})
        for lk in dropping:
            self.filters.pop(lk, None)
        await self.health.update(self.view.health())
        await self._announce(self.view.announced())

    def _filters(self, listeners: Mapping[ListenKey, object]) -> None:
        lb_ips = self.view.service_ips()
        for lk in [k for k in self.filters if k not in listeners]:
            del self.filters[lk]
        for lk, ln in listeners.items():
            ranges = self.view.ranges(lk[1]) if lk[1] in lb_ips else ()
            fd = listener_fileno(ln)
            if fd is None or self.filters.get(lk, (fd, ())) == (fd, ranges):
                continue
            try:
                if ranges:
                    restrict(fd, ranges, also=[lk[1]])
                else:
                    detach(fd)
            except (OSError, ValueError) as exc:
                log.error("%s %s:%d: loadBalancerSourceRanges not enforced: %s", *lk, exc)
                continue
            if ranges:
                self.filters[lk] = (fd, ranges)
            else:
                self.filters.pop(lk, None)

    async def _announce(self, wanted: dict[str, str]) -> None:
        if self.routes is None:
            return
        if self.announced is None:
            self.announced = self.routes.recorded()
        for ip, via in sorted(self.announced.items()):
            if wanted.get(ip) != via:
                await self.routes.withdraw(ip, via)
                del self.announced[ip]
        for ip, via in sorted(wanted.items()):
            if self.announced.get(ip) != via:
                await self.routes.announce(ip, via)
                self.announced[ip] = via

    async def stop(self) -> None:
        await self.health.stop()
        if self.routes is not None:
            await self._announce({})
            await self.routes.close()
