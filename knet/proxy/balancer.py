"""The proxy's load balancer: which endpoint serves the next connection or request.

Pure logic, the kube-proxy userspace `LoadBalancerRR` way: no sockets, the clock (and the
random source) passed in. Per service port it keeps the usable endpoints in a stable order
(sorted by ip, port), the algorithm's state, for least-connections a count of active
connections per endpoint (the data path calls `release()` when one ends) and (with `sessionAffinity: ClientIP`) a
sliding-window map from client IP to endpoint. Algorithms, per cluster or per Service:
`round-robin` (kube-proxy userspace), `random` (what the iptables and nftables modes do),
`least-connections` and `source-hash` (IPVS's `lc` and `sh`). Every pick says which
algorithm made it and why (`rr#2`, `random 1/3`, `lc 0 active`, `sh bucket 17`,
`affinity-hit`, `affinity-expired`, `retry`): that is what flow records show.
Retries and back-off belong to the data path.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)

DEFAULT_AFFINITY_SECONDS = 10800
MAX_AFFINITY_SECONDS = 86400
DIAL_TRIES = 4
DIAL_BACKOFF = 0.25  # seconds before the 2nd try; doubles after each failure

ROUND_ROBIN, RANDOM = "round-robin", "random"
LEAST_CONNECTIONS, SOURCE_HASH = "least-connections", "source-hash"
ALGORITHMS = (ROUND_ROBIN, RANDOM, LEAST_CONNECTIONS, SOURCE_HASH)
SH_BUCKETS = 256  # IPVS sh's table size (IP_VS_SH_TAB_SIZE)

_RR = tuple(f"rr#{i}" for i in range(256))

__all__ = [
    "ALGORITHMS",
    "DEFAULT_AFFINITY_SECONDS",
    "DIAL_BACKOFF",
    "DIAL_TRIES",
    "LEAST_CONNECTIONS",
    "MAX_AFFINITY_SECONDS",
    "RANDOM",
    "ROUND_ROBIN",
    "SOURCE_HASH",
    "Clock",
    "Endpoint",
    "LoadBalancer",
    "NoEndpoints",
    "Pick",
    "SystemClock",
    "check_algorithm",
    "source_bucket",
]


class Clock(Protocol):
    def monotonic(self) -> float: ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()


class NoEndpoints(Exception):
    """Sentinel: the service port is unknown or has no usable endpoint."""


def check_algorithm(name: str) -> str:
    """`name` if it is a known algorithm, else ValueError naming the choices."""
    for known in ALGORITHMS:  # the canonical string: the hot path compares by identity
        if name == known:
            return known
    raise ValueError(f"proxy algorithm {name!r} is not one of {', '.join(ALGORITHMS)}")


def source_bucket(client_ip: str) -> int:
    """IPVS sh's hash of a source address: multiplicative (Knuth) hash into 256 buckets."""
    try:
        addr = int(ipaddress.ip_address(client_ip)) & 0xFFFFFFFF
    except ValueError:
        addr = sum(client_ip.encode()) & 0xFFFFFFFF
    return ((addr * 2654435761) & 0xFFFFFFFF) >> (32 - 8)


@dataclass(frozen=True, slots=True)
class Endpoint:
    ip: str
    port: int
    pod: str = field(default="", compare=False)  # "ns/name" from targetRef, "" if unknown

    @property
    def addr(self) -> str:
        return f"{self.ip}:{self.port}"

    def sort_key(self) -> tuple[int, int, int]:
        ip = ipaddress.ip_address(self.ip)
        return (ip.version, int(ip), self.port)


@dataclass(frozen=True, slots=True)
class Pick:
    endpoint: Endpoint
    reason: str  # "rr#N" | "random i/n" | "lc N active" | "sh bucket B" | "affinity-hit" | ...
    algorithm: str = ROUND_ROBIN


@dataclass(slots=True)
class _Sticky:
    endpoint: Endpoint
    last_used: float


@dataclass(slots=True)
class _PortState:
    endpoints: tuple[Endpoint, ...] = ()
    index: int = 0
    affinity_seconds: float | None = None  # None: no session affinity
    algorithm: str = ROUND_ROBIN
    sticky: dict[str, _Sticky] = field(default_factory=dict)
    active: dict[Endpoint, int] = field(default_factory=dict)


class LoadBalancer:
    """Picks endpoints per service port key ("ns/name:port"): the port's algorithm (default
    the cluster's), with optional ClientIP affinity over it."""

    def __init__(self, *, clock: Clock, algorithm: str = ROUND_ROBIN,
                 rng: random.Random | None = None) -> None:
        self._clock = clock
        self.algorithm = check_algorithm(algorithm)
        self._rng = rng if rng is not None else random.Random()
        self._ports: dict[str, _PortState] = {}

    def __repr__(self) -> str:
        return f"<LoadBalancer {self.algorithm} {len(self._ports)} service ports>"

    def update(self, key: str, endpoints: Iterable[Endpoint], *,
               affinity_seconds: float | None = None, algorithm: str | None = None) -> None:
        """Set the usable endpoints, affinity and algorithm (None: the cluster's) of a
        service port (idempotent). A changed endpoint list restarts the round-robin at the
        first endpoint; affinity entries pointing at an endpoint that is gone are dropped."""
        if affinity_seconds is not None:
            affinity_seconds = min(max(float(affinity_seconds), 1.0), MAX_AFFINITY_SECONDS)
        ordered = tuple(sorted(set(endpoints), key=Endpoint.sort_key))
        state = self._ports.setdefault(key, _PortState())
        state.algorithm = check_algorithm(algorithm) if algorithm else self.algorithm
        if state.algorithm is not LEAST_CONNECTIONS:
            state.active.clear()  # counted only for least-connections
        if ordered != state.endpoints:
            state.endpoints = ordered
            state.index = 0
            alive = set(ordered)
            state.sticky = {ip: s for ip, s in state.sticky.items() if s.endpoint in alive}
            state.active = {e: n for e, n in state.active.items() if e in alive}
        if affinity_seconds != state.affinity_seconds:
            state.affinity_seconds = affinity_seconds
            if affinity_seconds is None:
                state.sticky.clear()

    def remove(self, key: str) -> None:
        """Forget a service port (no-op if unknown)."""
        self._ports.pop(key, None)

    def keys(self) -> list[str]:
        return sorted(self._ports)

    def endpoints(self, key: str) -> tuple[Endpoint, ...]:
        state = self._ports.get(key)
        return state.endpoints if state else ()

    def active(self, key: str, endpoint: Endpoint) -> int:
        """Connections picked for `endpoint` and not released yet."""
        state = self._ports.get(key)
        return state.active.get(endpoint, 0) if state else 0

    def release(self, key: str, endpoint: Endpoint) -> None:
        """A connection, flow or request picked for `endpoint` has ended."""
        state = self._ports.get(key)
        if state is not None and state.active:
            n = state.active.get(endpoint, 0)
            if n > 1:
                state.active[endpoint] = n - 1
            else:
                state.active.pop(endpoint, None)

    def next_endpoint(self, key: str, client_ip: str) -> Pick:
        """The endpoint for a new connection/request from client_ip; NoEndpoints if none."""
        state = self._state(key)
        if state.affinity_seconds is None:
            if state.algorithm is ROUND_ROBIN:  # the hot path, inlined
                eps = state.endpoints
                index = state.index % len(eps)
                state.index = index + 1
                return Pick(eps[index], _RR[index] if index < len(_RR) else f"rr#{index}",
                            ROUND_ROBIN)
            return self._count(state, self._choose(state, client_ip, avoid=None))
        expired = False
        sticky = state.sticky.get(client_ip)
        if sticky is not None:
            now = self._clock.monotonic()
            if now - sticky.last_used <= state.affinity_seconds:
                sticky.last_used = now
                return self._count(state, Pick(sticky.endpoint, "affinity-hit", state.algorithm))
            expired = True
        pick = self._choose(state, client_ip, avoid=None)
        self._remember(state, client_ip, pick.endpoint)
        if expired:
            pick = Pick(pick.endpoint, "affinity-expired", state.algorithm)
        return self._count(state, pick)

    def report_failure(self, key: str, client_ip: str, failed: Endpoint) -> Pick:
        """The dial to `failed` did not work: release it, forget it for this client, pick
        another (the pick is counted like `next_endpoint`'s)."""
        state = self._state(key)
        self.release(key, failed)
        sticky = state.sticky.get(client_ip)
        if sticky is not None and sticky.endpoint == failed:
            del state.sticky[client_ip]
        endpoint = self._choose(state, client_ip, avoid=failed).endpoint
        self._remember(state, client_ip, endpoint)
        return self._count(state, Pick(endpoint, "retry", state.algorithm))

    def sweep(self) -> int:
        """Drop expired affinity entries; returns how many went. Call now and then."""
        now = self._clock.monotonic()
        dropped = 0
        for state in self._ports.values():
            if state.affinity_seconds is None or not state.sticky:
                continue
            limit = state.affinity_seconds
            stale = [ip for ip, s in state.sticky.items() if now - s.last_used > limit]
            for ip in stale:
                del state.sticky[ip]
            dropped += len(stale)
        return dropped

    def _state(self, key: str) -> _PortState:
        state = self._ports.get(key)
        if state is None or not state.endpoints:
            raise NoEndpoints(f"service port {key}: no usable endpoints")
        return state

    @staticmethod
    def _count(state: _PortState, pick: Pick) -> Pick:
        """Count the pick as an active connection (only least-connections needs the counts:
        the other algorithms skip the bookkeeping on the hot path)."""
        if state.algorithm is LEAST_CONNECTIONS:
            active = state.active
            active[pick.endpoint] = active.get(pick.endpoint, 0) + 1
        return pick

    def _choose(self, state: _PortState, client_ip: str, *, avoid: Endpoint | None) -> Pick:
        """The algorithm's pick; `avoid` (a failed endpoint) only when there is another."""
        eps = state.endpoints
        n = len(eps)
        alg = state.algorithm
        if alg == ROUND_ROBIN:  # kube-proxy's: a failed endpoint next in turn is skipped
            index = state.index % n
            if avoid is not None and n > 1 and eps[index] == avoid:
                index = (index + 1) % n
            state.index = index + 1
            return Pick(eps[index], _RR[index] if index < len(_RR) else f"rr#{index}", alg)
        if avoid is not None and n > 1:
            eps = tuple(e for e in eps if e != avoid)
            n = len(eps)
        if alg == RANDOM:
            i = self._rng.randrange(n)
            return Pick(eps[i], f"random {i + 1}/{n}", alg)
        if alg == LEAST_CONNECTIONS:  # ties go round-robin, so idle endpoints share the load
            start = state.index % n
            order = eps[start:] + eps[:start]
            best = min(order, key=lambda e: state.active.get(e, 0))
            state.index = start + 1
            return Pick(best, f"lc {state.active.get(best, 0)} active", alg)
        if alg == SOURCE_HASH:
            bucket = source_bucket(client_ip)
            return Pick(eps[bucket % n], f"sh bucket {bucket}", alg)
        raise AssertionError(f"balancer: unknown algorithm {alg!r}")

    def _remember(self, state: _PortState, client_ip: str, endpoint: Endpoint) -> None:
        if state.affinity_seconds is not None:
            state.sticky[client_ip] = _Sticky(endpoint, self._clock.monotonic())
