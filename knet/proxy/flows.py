"""Flow records: one per TCP connection, UDP flow and HTTP request through the proxy.

A `FlowRecord` says who talked to which service, which endpoint was picked and why, how
many bytes went each way, how long it took and how it ended. Records go into a bounded
`FlowRing` (a deque: appending is O(1), so recording costs the data path next to nothing)
that followers read live through per-subscriber queues. `flows_routes(ring)` serves them
over HTTP for the agent: GET /flows?since=&limit= (JSON) and GET /flows?follow=1 (ndjson).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

FORWARDED, REFUSED, ERROR, TIMEOUT = "FORWARDED", "REFUSED", "ERROR", "TIMEOUT"
REJECTED = "REJECTED"  # the L7 path refused a malformed request (nothing forwarded)
DROPPED = "DROPPED"    # a Local traffic policy with no endpoint on this node (kube-proxy DROP)
PodResolver = Callable[[str], "str | None"]

__all__ = [
    "DROPPED",
    "ERROR",
    "FORWARDED",
    "REFUSED",
    "REJECTED",
    "TIMEOUT",
    "FlowRecord",
    "FlowRing",
    "PodResolver",
    "flows_app",
    "flows_routes",
    "parse_since",
]


@dataclass(slots=True)
class FlowRecord:
    time: float                 # wall clock (epoch seconds) when the flow started
    node: str
    protocol: str               # "tcp" | "udp" | "http"
    client_ip: str
    client_port: int
    service: str                # "namespace/name"
    service_port: int
    port_name: str = ""
    client_pod: str = ""
    endpoint_ip: str = ""
    endpoint_port: int = 0
    endpoint_pod: str = ""
    reason: str = ""            # rr#N | random i/n | lc N active | sh bucket B | affinity-hit
                                # | affinity-expired | retry | reject IP:PORT | drop IP:PORT
    bytes_sent: int = 0         # client -> endpoint
    bytes_received: int = 0     # endpoint -> client
    duration: float = 0.0       # seconds
    verdict: str = FORWARDED    # FORWARDED | REFUSED | DROPPED | REJECTED | ERROR | TIMEOUT
    error: str = ""
    method: str = ""
    path: str = ""
    status: int = 0
    latency: float = 0.0        # seconds to the response head
    retries: int = 0
    # the mesh's decisions (knet/mesh): the route and match taken, the weight bucket
    # ("1:ns/svc:80/v2 20/100"), each retry and why, the fault injected, ejections caused
    route: str = ""
    match: str = ""
    bucket: str = ""
    fault: str = ""
    retry_reasons: list[str] = field(default_factory=list)
    ejections: list[str] = field(default_factory=list)
    mirrored: str = ""          # the endpoint a copy of the request went to (mesh mirror)
    # mTLS and authorization (knet/mesh/guard.py): was the hop to the endpoint mutual TLS,
    # the SPIFFE ids of both ends, the AuthorizationPolicy verdict (ALLOW | DENY | "" when
    # no policy applies) and the deciding policy ("ns/name")
    mtls: bool = False
    source_identity: str = ""
    destination_identity: str = ""
    authz: str = ""
    authz_policy: str = ""
    algorithm: str = ""         # the balancing algorithm that picked the endpoint (balancer.py)
    # NetworkPolicy drops (knet/policy/enforcer.py, verdict DROPPED): the pod whose ingress or
    # egress was denied and the policies isolating it
    netpol_pod: str = ""
    netpol_policies: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FlowRing:
    """The last `size` records, with a sequence number each, and live followers."""

    def __init__(self, *, size: int = 10_000, resolver: PodResolver | None = None) -> None:
        self._ring: deque[tuple[int, FlowRecord]] = deque(maxlen=size)
        self._seq = 0
        self._followers: set[asyncio.Queue[FlowRecord]] = set()
        self.resolver = resolver
        self.dropped_for_followers = 0
        self.sinks: list[Callable[[FlowRecord], None]] = []  # e.g. the mesh's metrics

    def __len__(self) -> int:
        return len(self._ring)

    def __repr__(self) -> str:
        return f"<FlowRing {len(self._ring)}/{self._ring.maxlen} records, seq {self._seq}>"

    def record(self, rec: FlowRecord) -> None:
        if self.resolver is not None and not rec.client_pod:
            rec.client_pod = self.resolver(rec.client_ip) or ""
        self._seq += 1
        self._ring.append((self._seq, rec))
        for sink in self.sinks:
            sink(rec)
        for q in self._followers:
            try:
                q.put_nowait(rec)
            except asyncio.QueueFull:
                self.dropped_for_followers += 1

    def records(self, *, since: float | None = None, limit: int | None = None) -> list[FlowRecord]:
        out = [r for _, r in self._ring if since is None or r.time >= since]
        return out[-limit:] if limit else out

    async def follow(self, *, backlog: int = 10_000) -> AsyncIterator[FlowRecord]:
        """Records as they are made, from now on (a slow follower loses records, counted)."""
        q: asyncio.Queue[FlowRecord] = asyncio.Queue(maxsize=backlog)
        self._followers.add(q)
        try:
            while True:
                yield await q.get()
        finally:
            self._followers.discard(q)


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")


def parse_since(text: str, *, now: float | None = None) -> float:
    """`since` as epoch seconds ("1700000000.5") or an age ("30s", "5m", "2h", "500ms")."""
    now = time.time() if now is None else now
    m = _DURATION.match(text.strip())
    if m:
        scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]
        return now - float(m.group(1)) * scale
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"flows: since={text!r} is neither epoch seconds nor an age "
                         "like 30s, 5m or 2h") from None


def flows_routes(ring: FlowRing) -> list[web.RouteDef]:
    """Routes to add to the agent's app: `app.add_routes(flows_routes(ring))`."""

    async def get_flows(request: web.Request) -> web.StreamResponse:
        q = request.query
        try:
            since = parse_since(q["since"]) if q.get("since") else None
            limit = int(q["limit"]) if q.get("limit") else None
        except ValueError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        if q.get("follow") not in (None, "", "0", "false"):
            return await _follow(request, ring)
        return web.json_response([r.to_dict() for r in ring.records(since=since, limit=limit)])

    return [web.get("/flows", get_flows)]


async def _follow(request: web.Request, ring: FlowRing) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await resp.prepare(request)
    try:
        async for rec in ring.follow():
            await resp.write(json.dumps(rec.to_dict()).encode() + b"\n")
    except ConnectionResetError:
        log.debug("flows: follower %s went away", request.remote)
    return resp


def flows_app(ring: FlowRing) -> web.Application:
    """The same routes as a sub-app, for `app.add_subapp(prefix, flows_app(ring))`."""
    app = web.Application()
    app.add_routes(flows_routes(ring))
    return app
