"""One HTTP request's trip through the mesh: the decisions the L7 path acts on, made here
without sockets so they are tested as data.

`plan(...)` matches the request against the port's routes and returns an `Answer` (a
status the proxy sends itself: no route 404, invalid backend 500/503, fault abort, pool
overflow) or an `Exchange`: the route, the weighted backend and its bucket, the rewritten
request bytes, the fault delay, the timeouts and retry policy. The proxy then asks
`next_endpoint()` per try (never an endpoint this request already tried), reports each
outcome with `finish(status)` (outlier detection), and `retry_reason(status)` says whether
and why to try again. Everything decided lands in the flow record (`annotate`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from knet.mesh.lb import MeshBalancer
from knet.mesh.match import find_route, pick_backend
from knet.mesh.types import Backend, HeaderOps, Match, Route, RouteTable
from knet.mesh.wire import edit_request, header_map
from knet.proxy.balancer import Endpoint, Pick
from knet.proxy.flows import FlowRecord

__all__ = ["ABORT_BODY", "OVERFLOW", "Answer", "Exchange", "plan"]

ABORT_BODY = "fault filter abort"      # Envoy's body for an injected abort
OVERFLOW = "upstream connect error or disconnect/reset before headers. reset reason: overflow"
TIMEOUT_BODY = "upstream request timeout"  # Envoy's 504 body


def _ops(*ops: HeaderOps) -> HeaderOps:
    return HeaderOps(tuple(x for o in ops for x in o.set), tuple(x for o in ops for x in o.add),
                     tuple(x for o in ops for x in o.remove))


@dataclass(slots=True)
class Answer:
    status: int
    why: str
    body: str | None = None        # the exact body (Envoy's words); None: the proxy's own
    route: str = ""
    fault: str = ""

    def annotate(self, rec: FlowRecord) -> None:
        rec.route, rec.fault = self.route, self.fault


@dataclass(slots=True)
class Exchange:
    route: Route
    match: Match
    backend: Backend
    bucket: str
    data: bytes
    lb: MeshBalancer
    client_ip: str
    headers: dict[str, str]
    query: dict[str, str]
    delay: float = 0.0
    abort: int = 0
    fault: str = ""
    tried: set[Endpoint] = field(default_factory=set)
    current: Endpoint | None = None
    retries: list[str] = field(default_factory=list)
    ejections: list[str] = field(default_factory=list)

    @property
    def timeout(self) -> float | None:
        return self.route.timeout

    @property
    def per_try_timeout(self) -> float | None:
        return self.route.retry.per_try_timeout

    @property
    def response_ops(self) -> HeaderOps:
        return _ops(self.route.response_headers, self.backend.response_headers)

    def next_endpoint(self) -> Pick | None:
        got = self.lb.pick(self.backend, exclude=self.tried, client_ip=self.client_ip,
                           headers=self.headers, query=self.query)
        if got is None and self.tried:  # every endpoint tried: Envoy's predicate gives up
            got = self.lb.pick(self.backend, client_ip=self.client_ip, headers=self.headers,
                               query=self.query)
        if got is None:
            return None
        ep, why = got
        self.tried.add(ep)
        self.current = ep
        self.lb.begin(self.backend, ep)
        return Pick(ep, why if not self.retries else "retry")

    def finish(self, status: int | None) -> None:
        """The current try ended: with a response head (status) or without (None)."""
        ep, self.current = self.current, None
        if ep is None:
            return
        self.lb.end(self.backend, ep)
        ejected = self.lb.report(self.backend, ep, status)
        if ejected:
            self.ejections.append(ejected)

    def mirror(self) -> tuple[Endpoint, bytes] | None:
        """Where and what to mirror this time (the route's mirror and percentage): the
        request with `-shadow` appended to its Host, as Envoy sends it."""
        m = self.route.mirror
        if m is None or m.backend.status or self.lb.rng() * 100 >= m.percent:
            return None
        got = self.lb.pick(m.backend, client_ip=self.client_ip)
        if got is None:
            return None
        host = self.headers.get("host", "").split(":")[0] or m.backend.service.split("/")[1]
        return got[0], edit_request(self.data, target=None, ops=HeaderOps(),
                                    authority=f"{host}-shadow")

    def release(self) -> None:
        """The request ended mid-try (the client left): free the slot, judge no one."""
        ep, self.current = self.current, None
        if ep is not None:
            self.lb.end(self.backend, ep)

    def retry_reason(self, status: int | None, what: str) -> str:
        """Why to try again ("" = don't): attempts left and the policy covers the outcome."""
        if len(self.retries) >= self.route.retry.attempts or not self.route.retry.retries(status):
            return ""
        reason = f"{what}" if status is None else f"{status} from {what}"
        self.retries.append(reason)
        return reason

    def annotate(self, rec: FlowRecord) -> None:
        rec.route, rec.match, rec.bucket = self.route.source, self.match.describe(), self.bucket
        rec.fault, rec.retry_reasons = self.fault, list(self.retries)
        rec.ejections = list(self.ejections)


def plan(table: RouteTable, key: str, *, method: str, target: str, data: bytes,
         client_ip: str, client_ns: str | None, lb: MeshBalancer,
         rng: Callable[[], float]) -> Exchange | Answer | None:
    """The mesh's decision for one request on service port `key` (None: not meshed)."""
    pr = table.get(key)
    if pr is None:
        return None
    headers = header_map(data)
    found = find_route(pr.for_client(client_ns), method, target, headers)
    if found is None:
        return Answer(404, f"no route of {pr.service} matches {method} {target[:200]}")
    route, match = found
    if route.status:
        return Answer(route.status, f"{route.source}: {route.reason}", route=route.source)
    delay, abort, fault = 0.0, 0, ""
    if route.fault is not None:
        f = route.fault
        if f.delay and rng() * 100 < f.delay_percent:
            delay, fault = f.delay, f"delay {f.delay:g}s"
        if f.abort_status and rng() * 100 < f.abort_percent:
            abort = f.abort_status
            fault = (fault + ", " if fault else "") + f"abort {abort}"
    if abort and not delay:
        return Answer(abort, f"{route.source}: fault injected", ABORT_BODY, route.source, fault)
    picked = pick_backend(route, rng())
    if picked is None:
        return Answer(500, f"{route.source}: every backend has weight 0", route=route.source)
    backend, i = picked
    total = sum(b.weight for b in route.backends)
    bucket = f"{i}:{backend.name} {backend.weight}/{total}"
    if backend.status:
        return Answer(backend.status, f"{route.source}: {backend.reason}", route=route.source)
    if not lb.admit(backend):
        return Answer(503, f"{backend.name}: connection pool full", OVERFLOW, route.source)
    rw = route.rewrite
    new_target = rw.apply(target) if rw is not None and (rw.full_path or rw.replacement) \
        else None
    out = edit_request(data, target=new_target, authority=rw.authority if rw else None,
                       ops=_ops(route.request_headers, backend.request_headers))
    query = dict(parse_qsl(target.partition("?")[2], keep_blank_values=True))
    return Exchange(route, match, backend, bucket, out, lb, client_ip, headers, query,
                    delay, abort, fault)
