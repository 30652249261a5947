"""The L7 "mesh" path for ports with `appProtocol: http`: a lean HTTP/1.1 reverse proxy.

Both legs are `asyncio.Protocol`s on uvloop (aiohttp's client was the cost: a plain aiohttp
reverse proxy did 3,600 req/s here). Each request is balanced on its own (round-robin or
ClientIP affinity), retried on another endpoint after a connect failure or a 503 (count
configurable), bounded by a per-request timeout to the response head (504 when it passes),
and answered with `x-knet-upstream: <pod>`. Upstream connections are kept alive in a pool
per endpoint. Request bodies are read whole (up to 8 MiB, so a retry can resend them);
response bodies stream through byte for byte with back-pressure. One flow record each.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

from knet.proxy.balancer import Endpoint, NoEndpoints, Pick
from knet.proxy.config import ServicePort
from knet.proxy.flows import ERROR, FORWARDED, REFUSED, TIMEOUT, FlowRecord
from knet.proxy.httpwire import BadMessage, Chunked, Head, parse_head
from knet.proxy.tcp import ProxyContext, new_record

log = logging.getLogger(__name__)

__all__ = ["HttpListener"]

MAX_BODY = 8 << 20
IDLE_PER_ENDPOINT = 64
_REASONS = {400: b"Bad Request", 413: b"Content Too Large", 502: b"Bad Gateway",
            503: b"Service Unavailable", 504: b"Gateway Timeout"}


class _Up(asyncio.Protocol):
    """One keep-alive connection to an endpoint; parses and relays one response at a time."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.head_fut: asyncio.Future[Head] | None = None
        self.done_fut: asyncio.Future[bool] | None = None
        self.sink: asyncio.Transport | None = None
        self.no_body = False
        self.chunked: Chunked | None = None
        self.remaining: int | None = None
        self.received = 0
        self.closed = False
        self.reusable = True
        self.complete = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, data: bytes, *, head_only: bool) -> asyncio.Future[Head]:
        loop = asyncio.get_running_loop()
        self.head_fut, self.done_fut = loop.create_future(), loop.create_future()
        self.no_body, self.sink, self.received = head_only, None, 0
        self.complete = False
        self.transport.write(data)  # type: ignore[union-attr]
        return self.head_fut

    def data_received(self, data: bytes) -> None:
        if self.sink is not None:
            self._body(data)
            return
        self.buf += data
        if self.head_fut is None or self.head_fut.done():
            if self.head_fut is None:
                self.close()  # bytes nobody asked for
            return
        while True:
            try:
                head = parse_head(self.buf, response=True)
            except BadMessage as exc:
                self.head_fut.set_exception(ConnectionError(f"bad response: {exc}"))
                self.close()
                return
            if head is None:
                return
            status = int(head.start[1])
            if 100 <= status < 200 and status != 101:
                del self.buf[:head.size]  # interim response (100 Continue): not relayed
                continue
            self.head_fut.set_result(head)
            return

    def relay(self, head: Head, sink: asyncio.Transport, prefix: bytes) -> asyncio.Future[bool]:
        """Send prefix (the rewritten head) then the body to sink; done(True) if reusable."""
        status = int(head.start[1])
        if self.no_body or status in (204, 304):
            self.remaining, self.chunked = 0, None
        elif head.chunked:
            self.remaining, self.chunked = None, Chunked()
        else:
            self.remaining, self.chunked = head.length, None
        self.reusable = not head.close
        body = bytes(self.buf[head.size:])
        self.buf.clear()
        sink.write(prefix)
        self.received = len(prefix)
        self.sink = sink
        assert self.done_fut is not None
        if self.remaining == 0:
            self._end(reusable=self.reusable and not body)
        elif body:
            self._body(body)
        return self.done_fut

    def _body(self, data: bytes) -> None:
        sink = self.sink
        assert sink is not None
        if self.chunked is not None:
            n = self.chunked.feed(data)
            sink.write(data[:n] if n < len(data) else data)
            self.received += n
            if self.chunked.done:
                self._end(reusable=self.reusable and n == len(data))
        elif self.remaining is None:  # until close
            sink.write(data)
            self.received += len(data)
        else:
            n = min(self.remaining, len(data))
            sink.write(data[:n] if n < len(data) else data)
            self.received += n
            self.remaining -= n
            if self.remaining == 0:
                self._end(reusable=self.reusable and n == len(data))

    def _end(self, *, reusable: bool) -> None:
        self.sink = None
        self.complete = True
        if self.done_fut is not None and not self.done_fut.done():
            self.done_fut.set_result(reusable)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.head_fut is not None and not self.head_fut.done():
            self.head_fut.set_exception(ConnectionError(f"{self.endpoint.addr} closed"))
        if self.done_fut is not None and not self.done_fut.done():
            self.complete = self.sink is not None and self.remaining is None \
                and self.chunked is None  # a body delimited by the close is whole
            self.done_fut.set_result(False)
        self.sink = None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _Pool:
    """Idle keep-alive upstream connections, per endpoint (LIFO)."""

    def __init__(self, ctx: ProxyContext) -> None:
        self.ctx = ctx
        self.idle: dict[Endpoint, list[_Up]] = {}

    def take(self, ep: Endpoint) -> _Up | None:
        conns = self.idle.get(ep)
        while conns:
            up = conns.pop()
            if not up.closed and up.transport is not None and not up.transport.is_closing():
                return up
        return None

    def give(self, up: _Up) -> None:
        conns = self.idle.setdefault(up.endpoint, [])
        if len(conns) < IDLE_PER_ENDPOINT and not up.closed:
            up.head_fut = up.done_fut = None
            conns.append(up)
        else:
            up.close()

    async def connect(self, ep: Endpoint, timeout: float) -> _Up:
        loop = asyncio.get_running_loop()
        sock = self.ctx.sockets.new()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (ep.ip, ep.port)), timeout)
            _, up = await loop.create_connection(lambda: _Up(ep), sock=sock)
        except BaseException:
            sock.close()
            raise
        return up

    def close(self) -> None:
        for conns in self.idle.values():
            for up in conns:
                up.close()
        self.idle.clear()


class _Client(asyncio.Protocol):
    """One downstream (client) connection: requests handled one at a time, in order."""

    def __init__(self, listener: HttpListener) -> None:
        self.ln = listener
        self.t: asyncio.Transport = None  # type: ignore[assignment]
        self.buf = bytearray()
        self.busy = False
        self.closed = False
        self.up: _Up | None = None
        self.peer: tuple[str, int] = ("?", 0)
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername") or ("?", 0)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._next()
        if len(self.buf) > MAX_BODY + 65536:
            self.t.pause_reading()

    def eof_received(self) -> bool:
        if not self.busy:
            self.t.close()
        self.closed_read = True
        return True

    closed_read = False

    def pause_writing(self) -> None:
        if self.up is not None and self.up.transport is not None:
            self.up.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.up is not None and self.up.transport is not None:
            self.up.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.task is not None and not self.task.done():
            self.task.cancel()

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
            n = scan.feed(memoryview(self.buf)[head.size:])
            if not scan.done:
                return
            total = head.size + n
        else:
            total = head.size + (head.length or 0)
        if total - head.size > MAX_BODY:
            self._fail_fast(413, f"request body over {MAX_BODY} bytes")
            return
        if len(self.buf) < total:
            return
        body = bytes(self.buf[head.size:total])
        del self.buf[:total]
        self.busy = True
        self.task = asyncio.get_running_loop().create_task(self._exchange(head, body))

    def _fail_fast(self, status: int, why: str) -> None:
        self.t.write(_simple(status, why, close=True))
        self.t.close()
        self.buf.clear()

    async def _exchange(self, head: Head, body: bytes) -> None:
        rec = new_record(self.ln.ctx, self.ln.sp, "http", self.peer)
        rec.method, rec.path = head.start[0].decode("latin-1"), head.start[1].decode("latin-1")
        start = time.monotonic()
        keep = not head.close
        try:
            keep = await self._forward(head, body, rec, start) and keep
        except asyncio.CancelledError:
            rec.verdict, rec.error, keep = ERROR, "client went away", False
        finally:
            rec.duration = time.monotonic() - start
            self.up = None
            self.ln.ctx.emit(rec)
        self.busy = False
        if self.closed:
            return
        if not keep or self.closed_read:
            self.t.close()
            return
        self.t.resume_reading()
        if self.buf:
            self._next()

    async def _forward(self, head: Head, body: bytes, rec: FlowRecord, start: float) -> bool:
        """Does the exchange; returns whether the client connection may be kept."""
        ln = self.ln
        key, ip = ln.sp.key, self.peer[0]
        lines = b"\r\n".join([b" ".join((head.start[0], head.start[1], b"HTTP/1.1")),
                              *head.lines, b"X-Forwarded-For: " + ip.encode()])
        request = lines + b"\r\n\r\n" + body
        rec.bytes_sent = len(request)
        head_only = head.start[0] == b"HEAD"
        try:
            pick = ln.ctx.balancer.next_endpoint(key, ip)
        except NoEndpoints:
            return self._answer(rec, 503, REFUSED, f"service {ln.sp.service} has no ready "
                                "endpoints")
        deadline = start + ln.timeout
        error = ""
        for attempt in range(ln.retries + 1):
            if attempt:
                pick = ln.ctx.balancer.report_failure(key, ip, pick.endpoint)
            rec.retries = attempt
            _fill(rec, pick)
            try:
                async with asyncio.timeout_at(_loop_deadline(deadline)):
                    up, rhead = await self._try(pick, request, head_only)
            except TimeoutError:
                return self._answer(rec, 504, TIMEOUT, f"no response from {pick.endpoint.addr}"
                                    f" within {ln.timeout:g}s")
            except (OSError, ConnectionError) as exc:
                error = f"{pick.endpoint.addr}: {exc}"
                continue
            status = int(rhead.start[1])
            if status == 503 and attempt < ln.retries:
                up.close()
                error = f"{pick.endpoint.addr}: 503"
                continue
            rec.status, rec.latency = status, time.monotonic() - start
            return await self._relay(up, rhead, rec, pick, client_keep=not head.close)
        return self._answer(rec, 502, ERROR, f"no endpoint answered after "
                            f"{ln.retries + 1} tries; last {error}")

    async def _try(self, pick: Pick, request: bytes, head_only: bool) -> tuple[_Up, Head]:
        pool = self.ln.pool
        up = pool.take(pick.endpoint)
        if up is not None:
            try:
                return up, await self._send(up, request, head_only)
            except ConnectionError:
                pass  # the endpoint closed an idle keep-alive connection: dial afresh
        up = await pool.connect(pick.endpoint, self.ln.ctx.dial_timeouts[-1])
        return up, await self._send(up, request, head_only)

    async def _send(self, up: _Up, request: bytes, head_only: bool) -> Head:
        self.up = up
        try:
            return await up.send(request, head_only=head_only)
        except BaseException:
            up.close()
            raise

    async def _relay(self, up: _Up, rhead: Head, rec: FlowRecord, pick: Pick, *,
                     client_keep: bool) -> bool:
        framed = rhead.chunked or rhead.length is not None or up.no_body or \
            int(rhead.start[1]) in (204, 304)
        keep = client_keep and framed
        upstream = (pick.endpoint.pod or pick.endpoint.addr).encode()
        prefix = b"\r\n".join([b" ".join((b"HTTP/1.1", rhead.start[1], rhead.start[2])),
                               *rhead.lines, b"x-knet-upstream: " + upstream,
                               b"Connection: keep-alive" if keep else b"Connection: close"])
        try:
            reusable = await up.relay(rhead, self.t, prefix + b"\r\n\r\n")
        except BaseException:
            up.close()
            raise
        rec.bytes_received = up.received
        rec.verdict = FORWARDED
        if reusable and not up.closed:
            self.ln.pool.give(up)
        else:
            up.close()
        return keep and up.complete

    def _answer(self, rec: FlowRecord, status: int, verdict: str, why: str) -> bool:
        rec.status, rec.verdict, rec.error = status, verdict, why
        data = _simple(status, why, close=False)
        rec.bytes_received = len(data)
        self.t.write(data)
        return True


def _fill(rec: FlowRecord, pick: Pick) -> None:
    rec.endpoint_ip, rec.endpoint_port = pick.endpoint.ip, pick.endpoint.port
    rec.endpoint_pod, rec.reason = pick.endpoint.pod, pick.reason


def _loop_deadline(deadline: float) -> float:
    loop = asyncio.get_running_loop()
    return loop.time() + (deadline - time.monotonic())


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
        self.pool = _Pool(ctx)
        self._server: asyncio.AbstractServer | None = None

    def __repr__(self) -> str:
        return f"<HttpListener {self.sp.key} {self.ip}:{self.port}>"

    async def start(self) -> None:
        sock = self.ctx.sockets.listener(self.ip, self.port)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Client(self), sock=sock, backlog=1024)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self.pool.close()
