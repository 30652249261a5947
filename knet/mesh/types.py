"""The mesh route table as plain, immutable data: what the L7 path consults per request.

A `RouteTable` maps each meshed service port (`ServicePort.key`, "ns/name:port") to a
`PortRoutes`: routes in the order they are tried, each a `Match` list (any may match) and
weighted `Backend`s with the policies that govern the exchange (timeout, retries, fault,
header ops, rewrite, mirror) and, per backend, the DestinationRule's load balancing,
connection-pool limits and outlier detection. Nothing here does I/O; the compilers
(`gateway.py`, `istio.py`, `table.py`) build it, `match.py` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from knet.proxy.balancer import Endpoint

__all__ = [
    "Backend",
    "ConnectionPool",
    "Fault",
    "HeaderMatch",
    "HeaderOps",
    "LoadBalancing",
    "Match",
    "Mirror",
    "Outlier",
    "PortRoutes",
    "RetryPolicy",
    "Rewrite",
    "Route",
    "RouteTable",
    "StringMatch",
]

MatchKind = Literal["exact", "prefix", "path-prefix", "regex"]


@dataclass(frozen=True, slots=True)
class StringMatch:
    """`path-prefix` is Gateway API's PathPrefix (whole segments); `prefix` is Istio's plain
    string prefix; `regex` must match the whole value."""
    kind: MatchKind
    value: str
    ignore_case: bool = False

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


@dataclass(frozen=True, slots=True)
class HeaderMatch:
    name: str                 # lower case
    match: StringMatch | None  # None: must be absent (Istio withoutHeaders) / present
    invert: bool = False      # True: the header must NOT match (withoutHeaders)


@dataclass(frozen=True, slots=True)
class Match:
    path: StringMatch | None = None
    method: str | None = None
    headers: tuple[HeaderMatch, ...] = ()
    query: tuple[tuple[str, StringMatch], ...] = ()

    def describe(self) -> str:
        parts = [str(self.path)] if self.path else []
        if self.method:
            parts.append(f"method:{self.method}")
        parts += [f"header:{h.name}={'!' if h.invert else ''}{h.match}" for h in self.headers]
        parts += [f"query:{k}={m}" for k, m in self.query]
        return " ".join(parts) or "*"


@dataclass(frozen=True, slots=True)
class HeaderOps:
    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.set or self.add or self.remove)


@dataclass(frozen=True, slots=True)
class LoadBalancing:
    policy: Literal["ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "CONSISTENT_HASH"] = "ROUND_ROBIN"
    hash_header: str | None = None      # consistentHash.httpHeaderName (lower case)
    hash_query: str | None = None       # consistentHash.httpQueryParameterName
    hash_source_ip: bool = False        # consistentHash.useSourceIp


@dataclass(frozen=True, slots=True)
class ConnectionPool:
    max_connections: int | None = None          # tcp.maxConnections
    max_pending: int | None = None              # http.http1MaxPendingRequests
    max_requests: int | None = None             # http.http2MaxRequests (active requests)
    max_requests_per_connection: int | None = None
    max_retries: int | None = None              # concurrent retries


@dataclass(frozen=True, slots=True)
class Outlier:
    consecutive_5xx: int = 5
    consecutive_gateway: int | None = None
    interval: float = 10.0
    base_ejection: float = 30.0
    max_ejection_percent: int = 10


@dataclass(frozen=True, slots=True)
class Backend:
    """One weighted destination: a service port (optionally a subset) and its endpoints.
    `status` set: the backend is invalid (missing Service, undefined subset...) and the
    share of requests it would get is answered with that status and `reason`."""
    service: str                        # "ns/name"
    port: int
    weight: int
    subset: str = ""
    endpoints: tuple[Endpoint, ...] = ()
    status: int = 0
    reason: str = ""
    lb: LoadBalancing = LoadBalancing()
    pool: ConnectionPool | None = None
    outlier: Outlier | None = None
    request_headers: HeaderOps = HeaderOps()
    response_headers: HeaderOps = HeaderOps()

    @property
    def name(self) -> str:
        return f"{self.service}:{self.port}" + (f"/{self.subset}" if self.subset else "")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 2
    per_try_timeout: float | None = None
    retry_on: frozenset[str] = frozenset({"connect-failure", "refused-stream", "503"})

    def retries(self, status: int | None) -> bool:
        """Is this outcome retriable? status None: the connection failed or was reset."""
        on = self.retry_on
        if status is None:
            return bool(on & {"connect-failure", "reset", "refused-stream", "5xx",
                              "gateway-error"})
        return (str(status) in on or ("5xx" in on and status >= 500)
                or ("gateway-error" in on and status in (502, 503, 504))
                or ("retriable-4xx" in on and status == 409)
                or ("unavailable" in on and status == 503))


@dataclass(frozen=True, slots=True)
class Fault:
    delay: float = 0.0
    delay_percent: float = 0.0
    abort_status: int = 0
    abort_percent: float = 0.0


@dataclass(frozen=True, slots=True)
class Rewrite:
    """ReplacePrefixMatch / Istio's uri rewrite of a prefix match replace `prefix`;
    `full_path` replaces the whole path; `authority` the Host."""
    prefix: str | None = None
    replacement: str | None = None
    full_path: str | None = None
    authority: str | None = None

    def apply(self, path: str) -> str:
        base, q, query = path.partition("?")
        if self.full_path is not None:
            base = self.full_path
        elif self.prefix is not None and self.replacement is not None:
            rest = base[len(self.prefix.rstrip("/")):] if self.prefix != "/" else base
            rep = self.replacement
            if rep.endswith("/") and rest.startswith("/"):
                rest = rest[1:]
            base = (rep + rest) or "/"
            if not base.startswith("/"):
                base = "/" + base
        return base + q + query


@dataclass(frozen=True, slots=True)
class Mirror:
    backend: Backend
    percent: float = 100.0


@dataclass(frozen=True, slots=True)
class Route:
    """One entry of a port's route list. `source` names the object and rule that made it
    ("httproute default/split rules[1]"), which flow records carry."""
    source: str
    matches: tuple[Match, ...]
    backends: tuple[Backend, ...]
    timeout: float | None = None
    retry: RetryPolicy = RetryPolicy()
    fault: Fault | None = None
    request_headers: HeaderOps = HeaderOps()
    response_headers: HeaderOps = HeaderOps()
    rewrite: Rewrite | None = None
    mirror: Mirror | None = None
    status: int = 0            # answer every request with this (no valid backend weight)
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PortRoutes:
    key: str                                  # ServicePort.key
    service: str                              # "ns/name"
    port: int
    routes: tuple[Route, ...]
    consumer: dict[str, tuple[Route, ...]] = field(default_factory=dict)  # client ns -> routes
    api: Literal["default", "gateway", "istio"] = "default"

    def for_client(self, namespace: str | None) -> tuple[Route, ...]:
        """GAMMA: consumer routes (in the client's namespace) replace producer routes."""
        if namespace and namespace in self.consumer:
            return self.consumer[namespace]
        return self.routes


@dataclass(frozen=True, slots=True)
class RouteTable:
    ports: dict[str, PortRoutes]
    status: dict[str, list[dict[str, object]]]   # "kind ns/name" -> conditions / parents

    def get(self, key: str) -> PortRoutes | None:
        return self.ports.get(key)
