"""One downstream connection on the L7 path (knet/proxy/http.py has the whole story): parses
requests strictly one at a time, plans each with the mesh (`exchange.plan`), balances, dials
or reuses a pooled upstream, retries on another endpoint, relays the head and streams the
body, and writes one flow record per request. All in asyncio callbacks: no task per request.
Its listener (`HttpListener`) owns the deadlines and the upstream pool."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from knet.mesh.exchange import ABORT_BODY, TIMEOUT_BODY, Answer, plan
from knet.mesh.wire import edit_fields
from knet.proxy.balancer import NoEndpoints
from knet.proxy.flows import ERROR, FORWARDED, REFUSED, REJECTED, TIMEOUT
from knet.proxy.http1 import Request, RequestReader, Response
from knet.proxy.httpreq import MAX_BODY, Req, fill_pick, simple_answer
from knet.proxy.httpup import Upstream, shadow
from knet.proxy.sockets import set_rst_on_close
from knet.proxy.source import Origin
from knet.proxy.tcp import new_record

if TYPE_CHECKING:
    from knet.proxy.http import HttpListener

log = logging.getLogger(__name__)

__all__ = ["ClientConnection"]


class ClientConnection(asyncio.Protocol):
    """One downstream (client) connection: requests handled one at a time, in order, all in
    callbacks (the `Owner` of the upstream connection in use). Between requests the
    connection has a deadline (`HttpListener.deadlines`): the head must be complete within
    header_timeout of its first byte (slowloris), a body must keep moving, an idle
    keep-alive connection is closed after idle_timeout."""

    def __init__(self, listener: HttpListener) -> None:
        self.ln = listener
        self.t: asyncio.Transport = None  # type: ignore[assignment]
        self.reader: RequestReader = None  # type: ignore[assignment]
        self.req: Req | None = None
        self.up: Upstream | None = None
        self.closed = self.eof = self.served = False
        self.peer: tuple[str, int] = ("?", 0)
        self.sources: dict[tuple[str, bool], str] = {}  # (endpoint IP, eTP Local) -> source

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername") or ("?", 0)
        self.reader = RequestReader(b"X-Forwarded-For: %s\r\n" % self.peer[0].encode(),
                                    max_body=MAX_BODY, host=self.ln.host)
        guard = self.ln.ctx.guard
        if guard is not None:  # the mesh: PeerAuthentication STRICT refuses plaintext
            rec = new_record(self.ln.ctx, self.ln.sp, "http", self.peer)
            refused = guard.admit(self.ln.sp, rec)
            if refused:
                rec.verdict, rec.error = REFUSED, refused
                self.ln.ctx.emit(rec)
                set_rst_on_close(self.t.get_extra_info("socket"))
                self.closed = True
                self.t.abort()
                return
        self._arm()

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        if self.req is None:
            self._next()
        elif self.reader.ready or self.reader.error:
            self.t.pause_reading()  # one request ahead is enough: the rest waits in the kernel

    def eof_received(self) -> bool:
        self.eof = True
        if self.req is None:
            self._close()
        return True

    def pause_writing(self) -> None:
        if self.up is not None and self.up.transport is not None:
            self.up.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.up is not None and self.up.transport is not None:
            self.up.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.ln.deadlines.pop(self, None)
        if self.req is not None:
            if self.up is not None:
                self.up.close()
            self.req.rec.verdict, self.req.rec.error = ERROR, "client went away"
            self._finish(keep=False)

    def _close(self) -> None:
        self.ln.deadlines.pop(self, None)
        self.t.close()

    def _next(self) -> None:
        """Start the next complete request; else answer a pending error; else wait."""
        r = self.reader
        if r.ready:
            self.ln.deadlines.pop(self, None)
            self._start(r.ready.popleft())
        elif r.error is not None:
            self._reject(r.error.status, REJECTED, r.error.why)
        else:
            if r.expect and not r.continued:
                r.continued = True  # the body is read here, whole: ask for it
                self.t.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self._arm()

    def _arm(self) -> None:
        r, ln = self.reader, self.ln
        if r.in_head:
            ln.deadlines[self] = r.began + ln.header_timeout
        elif r.reading or not self.served:
            ln.deadlines[self] = time.monotonic() + ln.header_timeout
        else:
            ln.deadlines[self] = time.monotonic() + ln.idle_timeout

    def on_deadline(self) -> None:
        if self.req is not None or self.closed:
            return
        r = self.reader
        if r.reading:
            what = "request head" if r.in_head else "request body"
            self._reject(408, TIMEOUT, f"{what} not complete within {self.ln.header_timeout:g}s")
        else:
            self._close()  # idle: nothing to say

    def _reject(self, status: int, verdict: str, why: str) -> None:
        """Answer 4xx/5xx with Connection: close, forward nothing, record why."""
        rec = new_record(self.ln.ctx, self.ln.sp, "http", self.peer)
        data = simple_answer(status, why, close=True)
        rec.status, rec.verdict, rec.error, rec.bytes_received = status, verdict, why, len(data)
        self.ln.ctx.emit(rec)
        self.t.write(data)
        self._close()

    def _start(self, request: Request) -> None:
        rec = new_record(self.ln.ctx, self.ln.sp, "http", self.peer)
        rec.method, rec.path = request.method.decode("latin-1"), request.target.decode("latin-1")
        self.req = req = Req(request, rec)
        self.served = True
        rec.bytes_sent = len(req.data)
        guard = self.ln.ctx.guard
        if guard is not None and not guard.authorize(self.ln.sp, rec):
            self._answer(403, REFUSED, f"denied by {rec.authz_policy}",
                         body="RBAC: access denied")
            return
        mesh = self.ln.ctx.mesh
        if mesh is not None:
            client = self.ln.ctx.ring.resolver(self.peer[0]) if self.ln.ctx.ring.resolver else None
            got = plan(mesh.current(), self.ln.sp.key, method=rec.method, target=rec.path,
                       data=req.data, client_ip=self.peer[0],
                       client_ns=client.partition("/")[0] if client else None,
                       lb=mesh.lb, rng=mesh.rng)
            if isinstance(got, Answer):
                got.annotate(rec)
                self._answer(got.status, REFUSED if got.status < 500 or got.fault else ERROR,
                             got.why, body=got.body)
                return
            if got is not None:
                req.mx = got
                req.data = got.data
                got.annotate(rec)
                if got.delay:
                    self.ln.track(asyncio.get_running_loop().create_task(self._delayed(req)))
                    return
        self._go(req)

    def _go(self, req: Req) -> None:
        """Arm the request's deadline and send it (or answer an injected abort)."""
        mx = req.mx
        if mx is not None and mx.abort:
            mx.annotate(req.rec)
            self._answer(mx.abort, REFUSED, "fault injected after the delay",
                         body=ABORT_BODY)
            return
        timeout = mx.timeout if mx is not None and mx.timeout else self.ln.timeout
        req.deadline = time.monotonic() + timeout
        self.ln.waiting[self] = req.deadline
        shadowed = mx.mirror() if mx is not None else None
        if shadowed is not None:
            req.rec.mirrored = shadowed[0].pod or shadowed[0].addr
            self.ln.track(asyncio.get_running_loop().create_task(
                shadow(self.ln.ctx.sockets, *shadowed)))
        self._dispatch()

    async def _delayed(self, req: Req) -> None:
        assert req.mx is not None
        await asyncio.sleep(req.mx.delay)
        if self.req is req and not self.closed:
            self._go(req)

    def _dispatch(self) -> None:
        """Send the request to the next pick: a pooled connection, or a fresh dial."""
        req, ln = self.req, self.ln
        assert req is not None
        if req.mx is not None:
            pick = req.mx.next_endpoint()
            if pick is None:
                self._answer(503, REFUSED, f"{req.mx.backend.name} has no ready endpoints",
                             body="no healthy upstream")
                return
            req.pick = pick
            per_try = req.mx.per_try_timeout
            if per_try:
                ln.waiting[self] = min(req.deadline, time.monotonic() + per_try)
        else:
            try:
                self._balance(req)
            except NoEndpoints:
                self._answer(503, REFUSED, f"service {ln.sp.service} has no ready endpoints")
                return
        assert req.pick is not None
        fill_pick(req.rec, req.pick)
        req.rec.retries = req.attempt
        up = ln.pool.take(req.pick.endpoint, self._source(req.pick.endpoint.ip))
        if up is not None:
            self.up = up
            req.rec.source_ip, req.rec.source_port = up.sockname[:2]
            up.begin(self, req.data, head_only=req.head_only, reused=True)
        else:
            ln.track(asyncio.get_running_loop().create_task(self._dial(req)))

    def _source(self, endpoint_ip: str) -> str:
        """The client's IP when its source is kept for this endpoint (source.py), else "";
        decided once per endpoint of this client connection."""
        policy, ln = self.ln.ctx.source, self.ln
        if policy is None:
            return ""
        key = (endpoint_ip, ln.sp.external_local)
        got = self.sources.get(key)
        if got is None:
            bind = policy.bind(Origin(self.peer[0], external=ln.ip != ln.sp.cluster_ip,
                                      external_local=ln.sp.external_local), endpoint_ip)
            got = self.sources[key] = bind[0] if bind is not None else ""
        return got

    def _balance(self, req: Req) -> None:
        """The service balancer's pick (not meshed); NoEndpoints when there is none."""
        ln = self.ln
        if req.pick is None:
            req.pick = ln.ctx.balancer.next_endpoint(ln.sp.key, self.peer[0])
        else:
            req.pick = ln.ctx.balancer.report_failure(ln.sp.key, self.peer[0],
                                                      req.pick.endpoint)

    async def _dial(self, req: Req) -> None:
        assert req.pick is not None
        try:
            up = await self.ln.pool.connect(req.pick.endpoint, self.ln.ctx.dial_timeouts[-1],
                                            self._source(req.pick.endpoint.ip))
        except (TimeoutError, OSError) as exc:
            if self.req is req:
                self._retry(f"{req.pick.endpoint.addr}: {type(exc).__name__} {exc}".strip())
            return
        if self.req is not req:
            self.ln.pool.give(up)
            return
        self.up = up
        req.rec.source_ip, req.rec.source_port = up.sockname[:2]
        up.begin(self, req.data, head_only=req.head_only, reused=False)

    def _retry(self, error: str) -> None:
        req = self.req
        assert req is not None
        req.error = error
        self.up = None
        mx = req.mx
        if mx is not None:  # the route's retry policy, on another endpoint
            mx.finish(None)
            if not mx.retry_reason(None, error):
                mx.annotate(req.rec)
                self._answer(503, ERROR, f"no answer after {req.attempt + 1} tries; last "
                             f"{error}", body="upstream connect error or disconnect/reset "
                             "before headers. reset reason: connection failure")
                return
            req.attempt += 1
            self._dispatch()
            return
        if req.attempt >= self.ln.retries:
            self._answer(502, ERROR, f"no endpoint answered after {req.attempt + 1} tries; "
                         f"last {error}")
            return
        req.attempt += 1
        self._dispatch()

    def on_failed(self, up: Upstream, error: str, *, retry: bool = True) -> None:
        req = self.req
        if req is None or up is not self.up:
            return
        if not retry:
            self.up = None
            self._answer(502, ERROR, error)
            return
        if up.reused and not req.fresh:  # an idle keep-alive connection went stale
            req.fresh = True
            self.up = None
            self.ln.track(asyncio.get_running_loop().create_task(self._dial(req)))
            return
        self._retry(error)

    def on_head(self, up: Upstream, head: Response) -> None:
        req = self.req
        assert req is not None and req.pick is not None
        status = head.status
        mx = req.mx
        fields = head.fields
        if mx is not None:
            mx.finish(status)
            if mx.retry_reason(status, req.pick.endpoint.pod or req.pick.endpoint.addr):
                up.close()
                self.up = None
                req.attempt += 1
                mx.annotate(req.rec)
                self._dispatch()
                return
            mx.annotate(req.rec)
            fields = edit_fields(fields, mx.response_ops)
        elif status == 503 and req.attempt < self.ln.retries:
            up.close()
            self._retry(f"{req.pick.endpoint.addr}: 503")
            return
        self.ln.waiting.pop(self, None)
        rec = req.rec
        rec.status, rec.latency = status, time.monotonic() - req.start
        framed = head.chunked or head.length is not None or req.head_only or \
            status in (204, 304)
        req.keep = req.keep and framed
        ep = req.pick.endpoint
        prefix = b"HTTP/1.1 %d %s\r\n%sx-knet-upstream: %s\r\nConnection: %s\r\n\r\n" % (
            status, head.reason, fields, (ep.pod or ep.addr).encode(),
            b"keep-alive" if req.keep else b"close")
        up.relay(self.t, prefix)

    def on_done(self, up: Upstream, *, reusable: bool, complete: bool,
                error: str = "") -> None:
        req = self.req
        if req is None or up is not self.up:
            up.close()
            return
        req.rec.bytes_received = up.received
        req.rec.verdict, req.rec.error = (ERROR, error) if error else (FORWARDED, "")
        if reusable:
            self.ln.pool.give(up)
        else:
            up.close()
        self._finish(keep=req.keep and complete)

    def on_timeout(self) -> None:
        req = self.req
        if req is None:
            return
        if self.up is not None:
            self.up.close()
            self.up = None
        where = req.pick.endpoint.addr if req.pick else "any endpoint"
        mx = req.mx
        if mx is not None:
            now = time.monotonic()
            mx.finish(None)
            if now < req.deadline and mx.retry_reason(None, f"per-try timeout at {where}"):
                req.attempt += 1
                self.ln.waiting[self] = req.deadline
                self._dispatch()
                return
            mx.annotate(req.rec)
            timeout = mx.timeout or self.ln.timeout
            self._answer(504, TIMEOUT, f"no response from {where} within {timeout:g}s",
                         body=TIMEOUT_BODY)
            return
        self._answer(504, TIMEOUT, f"no response from {where} within {self.ln.timeout:g}s")

    def _answer(self, status: int, verdict: str, why: str, *, body: str | None = None) -> None:
        """Answer the request ourselves; `body` is the exact text (Envoy's words for mesh
        answers), else the status and why."""
        req = self.req
        assert req is not None
        rec = req.rec
        rec.status, rec.verdict, rec.error = status, verdict, why
        data = simple_answer(status, why, close=not req.keep, body=body)
        rec.bytes_received = len(data)
        if not self.closed:
            self.t.write(data)
        self._finish(keep=req.keep)

    def _finish(self, *, keep: bool) -> None:
        req, self.req, self.up = self.req, None, None
        self.ln.waiting.pop(self, None)
        if req is not None and req.mx is not None:
            req.mx.release()
        elif req is not None and req.pick is not None:
            self.ln.ctx.balancer.release(self.ln.sp.key, req.pick.endpoint)
        if req is not None:
            req.rec.duration = time.monotonic() - req.start
            self.ln.ctx.emit(req.rec)
        if self.closed:
            return
        r = self.reader
        if not keep or (self.eof and not r.ready and r.error is None):
            self._close()
            return
        self.t.resume_reading()
        self._next()
