"""The proxy's load balancer: which endpoint serves the next connection or request.

Pure logic, the kube-proxy userspace `LoadBalancerRR` way: no sockets, the clock passed in.
Per service port it keeps the ready endpoints in a stable order (sorted by ip, port), a
round-robin index, and (with `sessionAffinity: ClientIP`) a sliding-window map from client
IP to endpoint. Every pick says why it was made (`rr#2`, `affinity-hit`, `affinity-expired`,
`retry`), which is what flow records show. Retries and back-off belong to the data path.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)

DEFAULT_AFFINITY_SECONDS = 10800
MAX_AFFINITY_SECONDS = 86400
DIAL_TRIES = 4
DIAL_BACKOFF = 0.25  # seconds before the 2nd try; doubles after each failure

_RR = tuple(f"rr#{i}" for i in range(256))

__all__ = [
    "DEFAULT_AFFINITY_SECONDS",
    "DIAL_BACKOFF",
    "DIAL_TRIES",
    "MAX_AFFINITY_SECONDS",
    "Clock",
    "Endpoint",
    "LoadBalancer",
    "NoEndpoints",
    "Pick",
    "SystemClock",
]


class Clock(Protocol):
    def monotonic(self) -> float: ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()


class NoEndpoints(Exception):
    """Sentinel: the service port is unknown or has no ready endpoint."""


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
    reason: str  # "rr#N" | "affinity-hit" | "affinity-expired" | "retry"


@dataclass(slots=True)
class _Sticky:
    endpoint: Endpoint
    last_used: float


@dataclass(slots=True)
class _PortState:
    endpoints: tuple[Endpoint, ...] = ()
    index: int = 0
    affinity_seconds: float | None = None  # None: no session affinity
    sticky: dict[str, _Sticky] = field(default_factory=dict)


class LoadBalancer:
    """Round-robin with optional ClientIP affinity, per service port key ("ns/name:port")."""

    def __init__(self, *, clock: Clock) -> None:
        self._clock = clock
        self._ports: dict[str, _PortState] = {}

    def __repr__(self) -> str:
        return f"<LoadBalancer {len(self._ports)} service ports>"

    def update(self, key: str, endpoints: Iterable[Endpoint], *,
               affinity_seconds: float | None = None) -> None:
        """Set the ready endpoints and affinity of a service port (idempotent).

        A changed endpoint list restarts the round-robin at the first endpoint; affinity
        entries pointing at an endpoint that is gone are dropped."""
        if affinity_seconds is not None:
            affinity_seconds = min(max(float(affinity_seconds), 1.0), MAX_AFFINITY_SECONDS)
        ordered = tuple(sorted(set(endpoints), key=Endpoint.sort_key))
        state = self._ports.setdefault(key, _PortState())
        if ordered != state.endpoints:
            state.endpoints = ordered
            state.index = 0
            alive = set(ordered)
            state.sticky = {ip: s for ip, s in state.sticky.items() if s.endpoint in alive}
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

    def next_endpoint(self, key: str, client_ip: str) -> Pick:
        """The endpoint for a new connection/request from client_ip; NoEndpoints if none."""
        state = self._state(key)
        if state.affinity_seconds is None:  # the hot path: plain round-robin
            eps = state.endpoints
            index = state.index % len(eps)
            state.index = index + 1
            return Pick(eps[index], _RR[index] if index < len(_RR) else f"rr#{index}")
        expired = False
        sticky = state.sticky.get(client_ip)
        if sticky is not None:
            now = self._clock.monotonic()
            if now - sticky.last_used <= state.affinity_seconds:
                sticky.last_used = now
                return Pick(sticky.endpoint, "affinity-hit")
            expired = True
        index, endpoint = self._round_robin(state, avoid=None)
        self._remember(state, client_ip, endpoint)
        if expired:
            return Pick(endpoint, "affinity-expired")
        return Pick(endpoint, _RR[index] if index < len(_RR) else f"rr#{index}")

    def report_failure(self, key: str, client_ip: str, failed: Endpoint) -> Pick:
        """The dial to `failed` did not work: forget it for this client, pick another."""
        state = self._state(key)
        sticky = state.sticky.get(client_ip)
        if sticky is not None and sticky.endpoint == failed:
            del state.sticky[client_ip]
        _, endpoint = self._round_robin(state, avoid=failed)
        self._remember(state, client_ip, endpoint)
        return Pick(endpoint, "retry")

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
            raise NoEndpoints(f"service port {key}: no ready endpoints")
        return state

    @staticmethod
    def _round_robin(state: _PortState, *, avoid: Endpoint | None) -> tuple[int, Endpoint]:
        eps = state.endpoints
        index = state.index % len(eps)
        if avoid is not None and len(eps) > 1 and eps[index] == avoid:
            index = (index + 1) % len(eps)
        state.index = index + 1
        return index, eps[index]

    def _remember(self, state: _PortState, client_ip: str, endpoint: Endpoint) -> None:
        if state.affinity_seconds is not None:
            state.sticky[client_ip] = _Sticky(endpoint, self._clock.monotonic())
