"""The L7 "mesh" path for ports with `appProtocol: http`: a lean HTTP/1.1 reverse proxy.

Both legs are `asyncio.Protocol`s on uvloop (aiohttp's client was the cost: a plain aiohttp
reverse proxy did 3,600 req/s here). Each request is balanced on its own (round-robin or
ClientIP affinity), retried on another endpoint after a connect failure or a 503 (count
configurable), bounded by a per-request timeout to the response head (504 when it passes),
and answered with `x-knet-upstream: <pod>`. Upstream connections are kept alive in a pool
per endpoint (httpup.py). The exchange runs in callbacks, no task per request. Request
bodies are read whole (up to 8 MiB, so a retry can resend them);
response bodies stream through byte for byte with back-pressure. One flow record each.
"""

from __future__ import annotations

import asyncio
import logging
import time

from knet.proxy.balancer import NoEndpoints, Pick
from knet.proxy.config import ServicePort
from knet.proxy.flows import ERROR, FORWARDED, REFUSED, TIMEOUT, FlowRecord
from knet.proxy.httpup import Pool, Upstream
from knet.proxy.httpwire import BadMessage, Chunked, Head, parse_head
from knet.proxy.tcp import ProxyContext, new_record

log = logging.getLogger(__name__)

__all__ = ["HttpListener"]

MAX_BODY = 8 << 20
_REASONS = {400: b"Bad Request", 413: b"Content Too Large", 502: b"Bad Gateway",
            503: b"Service Unavailable", 504: b"Gateway Timeout"}


class _Req:
    """One request in flight: what to send, where it went, how often it was tried."""

    __slots__ = (
        "attempt",
        "data",
        "error",
        "fresh",
        "head_only",
        "keep",
        "pick",
        "rec",
        "start",
    )

    def __init__(self, data: bytes, head: Head, rec: FlowRecord) -> None:
        self.data, self.rec = data, rec
        self.head_only = head.start[0] == b"HEAD"
        self.keep = not head.close
        self.start = time.monotonic()
        self.attempt = 0
        self.pick: Pick | None = None
        self.fresh = False  # a stale pooled connection was replaced by a fresh dial
        self.error = ""


class _Client(asyncio.Protocol):
    """One downstream (client) connection: requests handled one at a time, in order, all in
    callbacks (the `Owner` of the upstream connection in use)."""

    def __init__(self, listener: HttpListener) -> None:
        self.ln = listener
        self.t: asyncio.Transport = None  # type: ignore[assignment]
        self.buf = bytearray()
        self.req: _Req | None = None
        self.up: Upstream | None = None
        self.closed = self.eof = self.continued = False
        self.peer: tuple[str, int] = ("?", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername") or ("?", 0)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.req is None:
            self._next()
        elif len(self.buf) > MAX_BODY + 65536:
            self.t.pause_reading()

    def eof_received(self) -> bool:
        self.eof = True
        if self.req is None:
            self.t.close()
        return True

    def pause_writing(self) -> None:
        if self.up is not None and self.up.transport is not None:
            self.up.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.up is not None and self.up.transport is not None:
            self.up.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.req is not None:
            if self.up is not None:
                self.up.close()
            self.req.rec.verdict, self.req.rec.error = ERROR, "client went away"
            self._finish(keep=False)

    def _next(self) -> None:
        try:
            head = parse_head(self.buf, response=False)
        except BadMessage as exc:
            self._fail_fast(400, str(exc))
            return
        if head is None:
            return
        if head.chunked:
            scan = Chunked()
            total = head.size + scan.feed(memoryview(self.buf)[head.size:])
            complete = scan.done
        else:
            total = head.size + (head.length or 0)
            complete = len(self.buf) >= total
        if total - head.size > MAX_BODY:
            self._fail_fast(413, f"request body over {MAX_BODY} bytes")
            return
        if not complete:
            if head.expect_continue and not self.continued:
                self.continued = True  # the body is read here, whole: ask for it
                self.t.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return
        self.continued = False
        body = bytes(self.buf[head.size:total])
        del self.buf[:total]
        ip = self.peer[0]
        lines = b"%s %s HTTP/1.1\r\n%s%sX-Forwarded-For: %s" % (
            head.start[0], head.start[1], head.fields, b"\r\n" if head.fields else b"",
            ip.encode())
        rec = new_record(self.ln.ctx, self.ln.sp, "http", self.peer)
        rec.method, rec.path = head.start[0].decode("latin-1"), head.start[1].decode("latin-1")
        self.req = req = _Req(lines + b"\r\n\r\n" + body, head, rec)
        rec.bytes_sent = len(req.data)
        self.ln.waiting[self] = req.start + self.ln.timeout
        self._dispatch()

    def _fail_fast(self, status: int, why: str) -> None:
        self.t.write(_simple(status, why, close=True))
        self.t.close()
        self.buf.clear()

    def _dispatch(self) -> None:
        """Send the request to the next pick: a pooled connection, or a fresh dial."""
        req, ln = self.req, self.ln
        assert req is not None
        try:
            if req.pick is None:
                req.pick = ln.ctx.balancer.next_endpoint(ln.sp.key, self.peer[0])
            else:
                req.pick = ln.ctx.balancer.report_failure(ln.sp.key, self.peer[0],
                                                          req.pick.endpoint)
        except NoEndpoints:
            self._answer(503, REFUSED, f"service {ln.sp.service} has no ready endpoints")
            return
        _fill(req.rec, req.pick)
        req.rec.retries = req.attempt
        up = ln.pool.take(req.pick.endpoint)
        if up is not None:
            self.up = up
            up.begin(self, req.data, head_only=req.head_only, reused=True)
        else:
            ln.track(asyncio.get_running_loop().create_task(self._dial(req)))

    async def _dial(self, req: _Req) -> None:
        assert req.pick is not None
        try:
            up = await self.ln.pool.connect(req.pick.endpoint, self.ln.ctx.dial_timeouts[-1])
        except (TimeoutError, OSError) as exc:
            if self.req is req:
                self._retry(f"{req.pick.endpoint.addr}: {type(exc).__name__} {exc}".strip())
            return
        if self.req is not req:
            self.ln.pool.give(up)
            return
        self.up = up
        up.begin(self, req.data, head_only=req.head_only, reused=False)

    def _retry(self, error: str) -> None:
        req = self.req
        assert req is not None
        req.error = error
        self.up = None
        if req.attempt >= self.ln.retries:
            self._answer(502, ERROR, f"no endpoint answered after {req.attempt + 1} tries; "
                         f"last {error}")
            return
        req.attempt += 1
        self._dispatch()

    def on_failed(self, up: Upstream, error: str) -> None:
        req = self.req
        if req is None or up is not self.up:
            return
        if up.reused and not req.fresh:  # an idle keep-alive connection went stale
            req.fresh = True
            self.up = None
            self.ln.track(asyncio.get_running_loop().create_task(self._dial(req)))
            return
        self._retry(error)

    def on_head(self, up: Upstream, head: Head) -> None:
        req = self.req
        assert req is not None and req.pick is not None
        status = int(head.start[1])
        if status == 503 and req.attempt < self.ln.retries:
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
        prefix = b"HTTP/1.1 %s %s\r\n%s%sx-knet-upstream: %s\r\nConnection: %s\r\n\r\n" % (
            head.start[1], head.start[2], head.fields, b"\r\n" if head.fields else b"",
            (ep.pod or ep.addr).encode(), b"keep-alive" if req.keep else b"close")
        up.relay(self.t, prefix)

    def on_done(self, up: Upstream, *, reusable: bool, complete: bool) -> None:
        req = self.req
        if req is None or up is not self.up:
            up.close()
            return
        req.rec.bytes_received = up.received
        req.rec.verdict = FORWARDED
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
        where = req.pick.endpoint.addr if req.pick else "any endpoint"
        self._answer(504, TIMEOUT, f"no response from {where} within {self.ln.timeout:g}s")

    def _answer(self, status: int, verdict: str, why: str) -> None:
        req = self.req
        assert req is not None
        rec = req.rec
        rec.status, rec.verdict, rec.error = status, verdict, why
        data = _simple(status, why, close=not req.keep)
        rec.bytes_received = len(data)
        if not self.closed:
            self.t.write(data)
        self._finish(keep=req.keep)

    def _finish(self, *, keep: bool) -> None:
        req, self.req, self.up = self.req, None, None
        self.ln.waiting.pop(self, None)
        if req is not None:
            req.rec.duration = time.monotonic() - req.start
            self.ln.ctx.emit(req.rec)
        if self.closed:
            return
        if not keep or self.eof:
            self.t.close()
            return
        self.t.resume_reading()
        if self.buf:
            self._next()


def _fill(rec: FlowRecord, pick: Pick) -> None:
    rec.endpoint_ip, rec.endpoint_port = pick.endpoint.ip, pick.endpoint.port
    rec.endpoint_pod, rec.reason = pick.endpoint.pod, pick.reason


def _simple(status: int, why: str, *, close: bool) -> bytes:
    body = f"{status} {_REASONS[status].decode()}: {why}\n".encode()
    return (b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nx-knet-upstream: none\r\nConnection: %s\r\n\r\n"
            % (status, _REASONS[status], len(body), b"close" if close else b"keep-alive")
            ) + body


class HttpListener:
    """The L7 path for one service port on ip:port inside the node's netns."""

    def __init__(self, ctx: ProxyContext, sp: ServicePort, *, ip: str, port: int,
                 retries: int = 2, timeout: float = 15.0) -> None:
        self.ctx, self.sp, self.ip, self.port = ctx, sp, ip, port
        self.retries, self.timeout = retries, timeout
        self.pool = Pool(ctx.sockets)
        self.waiting: dict[_Client, float] = {}  # client -> deadline of its response head
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"<HttpListener {self.sp.key} {self.ip}:{self.port}>"

    async def start(self) -> None:
        sock = self.ctx.sockets.listener(self.ip, self.port)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Client(self), sock=sock, backlog=1024)
        self._sweep()

    def _sweep(self) -> None:
        """One timer per listener, not one per request: ends requests past their deadline."""
        now = time.monotonic()
        for client in [c for c, deadline in self.waiting.items() if deadline <= now]:
            self.waiting.pop(client, None)
            client.on_timeout()
        interval = max(0.02, min(0.5, self.timeout / 10))
        self._sweeper = asyncio.get_running_loop().call_later(interval, self._sweep)

    def track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        self.pool.close()
