"""Endpoint choice inside a mesh backend, with Envoy's habits: pure state, clock and random
source passed in, no sockets.

`pick` honours the DestinationRule's policy (round robin, least request of two random
choices, random, consistent hash on a header / query parameter / source IP), skips the
endpoints this request already tried (Envoy's previous-hosts retry predicate) and the
ejected ones (outlier detection; all ejected: all are used again). `report` counts
consecutive 5xx per endpoint and ejects after `consecutive_5xx` for base_ejection_time x
the times ejected, never more than max_ejection_percent of the backend (but at least one
endpoint, as Envoy does). `admit` enforces the connection-pool limits (overflow -> 503).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from knet.mesh.types import Backend
from knet.proxy.balancer import Clock, Endpoint

__all__ = ["MeshBalancer"]


@dataclass(slots=True)
class _Ejection:
    until: float
    times: int


class MeshBalancer:
    def __init__(self, *, clock: Clock, rng: Callable[[], float]) -> None:
        self.clock, self.rng = clock, rng
        self.rr: dict[str, int] = {}
        self.active: dict[Endpoint, int] = {}
        self.in_backend: dict[str, int] = {}
        self.fails: dict[Endpoint, int] = {}
        self.ejected: dict[Endpoint, _Ejection] = {}

    def __repr__(self) -> str:
        return f"<MeshBalancer {len(self.active)} endpoints busy, {len(self.ejected)} ejected>"

    def _is_ejected(self, ep: Endpoint, now: float) -> bool:
        e = self.ejected.get(ep)
        return e is not None and e.until > now

    def pick(self, b: Backend, *, exclude: frozenset[Endpoint] | set[Endpoint] = frozenset(),
             client_ip: str = "", headers: Mapping[str, str] | None = None,
             query: Mapping[str, str] | None = None) -> tuple[Endpoint, str] | None:
        """(endpoint, why) or None when the backend has no endpoint left to try."""
        now = self.clock.monotonic()
        fresh = [e for e in b.endpoints if e not in exclude]
        healthy = [e for e in fresh if not self._is_ejected(e, now)] or fresh
        if not healthy:
            return None
        lb = b.lb
        if lb.policy == "CONSISTENT_HASH":
            key = (headers or {}).get(lb.hash_header or "") if lb.hash_header else \
                (query or {}).get(lb.hash_query or "") if lb.hash_query else \
                client_ip if lb.hash_source_ip else None
            if key is not None:
                ring = sorted(healthy, key=lambda e: zlib.crc32(f"{e.ip}:{e.port}".encode()))
                return ring[zlib.crc32(key.encode()) % len(ring)], "hash"
        if lb.policy == "RANDOM":
            return healthy[int(self.rng() * len(healthy)) % len(healthy)], "random"
        if lb.policy == "LEAST_REQUEST" and len(healthy) > 1:
            a = healthy[int(self.rng() * len(healthy)) % len(healthy)]
            c = healthy[int(self.rng() * len(healthy)) % len(healthy)]
            return (a if self.active.get(a, 0) <= self.active.get(c, 0) else c), "least-request"
        i = self.rr.get(b.name, 0)
        self.rr[b.name] = i + 1
        return healthy[i % len(healthy)], f"rr#{i % len(healthy)}"

    def admit(self, b: Backend) -> bool:
        """Room for one more request to b under its connection-pool limits?"""
        p = b.pool
        if p is None:
            return True
        busy = self.in_backend.get(b.name, 0)
        limits = [p.max_requests]
        if p.max_connections is not None:
            limits.append(p.max_connections + (p.max_pending or 0))
        return all(limit is None or busy < limit for limit in limits)

    def begin(self, b: Backend, ep: Endpoint) -> None:
        self.active[ep] = self.active.get(ep, 0) + 1
        self.in_backend[b.name] = self.in_backend.get(b.name, 0) + 1

    def end(self, b: Backend, ep: Endpoint) -> None:
        n = self.active.get(ep, 0) - 1
        if n > 0:
            self.active[ep] = n
        else:
            self.active.pop(ep, None)
        m = self.in_backend.get(b.name, 0) - 1
        if m > 0:
            self.in_backend[b.name] = m
        else:
            self.in_backend.pop(b.name, None)

    def report(self, b: Backend, ep: Endpoint, status: int | None) -> str:
        """Count the outcome (None: no response); the ejection it caused, if any."""
        od = b.outlier
        if od is None:
            return ""
        gateway = status is None or status in (502, 503, 504)
        if status is not None and status < 500:
            self.fails.pop(ep, None)
            return ""
        n = self.fails.get(ep, 0) + 1
        self.fails[ep] = n
        limit = od.consecutive_5xx
        if od.consecutive_gateway is not None and gateway:
            limit = min(limit, od.consecutive_gateway) if limit else od.consecutive_gateway
        if not limit or n < limit:
            return ""
        now = self.clock.monotonic()
        out = sum(1 for e in b.endpoints if e != ep and self._is_ejected(e, now))
        bound = max(1, len(b.endpoints) * od.max_ejection_percent // 100)
        if out >= bound:
            return ""
        prev = self.ejected.get(ep)
        times = (prev.times if prev else 0) + 1
        seconds = od.base_ejection * times
        self.ejected[ep] = _Ejection(now + seconds, times)
        self.fails.pop(ep, None)
        return f"ejected {ep.pod or ep.addr} for {seconds:g}s after {n} consecutive 5xx"
