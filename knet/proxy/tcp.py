"""The L4 TCP data path: a listener per ClusterIP:port / NodePort, bytes spliced both ways.

Built on `asyncio.Protocol` transports (no streams): each side's `data_received` writes
straight into the other side's transport, and write-buffer back-pressure pauses reading on
the opposite side. Half-close is passed through (EOF one way, data still flows the other).
No endpoint: the proxier does not listen at all (the kernel refuses, refusals.py); one
accepted in the moment endpoints go is reset at once (SO_LINGER 0) and a REFUSED flow
recorded. Dials go through `dial()`: a new pick from the balancer after each failure,
up to 4 tries with per-try timeouts of 250 ms doubling (kube-proxy's EndpointDialTimeouts).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from knet.proxy.balancer import DIAL_BACKOFF, DIAL_TRIES, LoadBalancer, NoEndpoints, Pick
from knet.proxy.config import ServicePort
from knet.proxy.flows import ERROR, FORWARDED, REFUSED, TIMEOUT, FlowRecord, FlowRing
from knet.proxy.sockets import SocketMaker, set_rst_on_close

if TYPE_CHECKING:
    from knet.mesh.guard import Guard
    from knet.mesh.source import MeshState

log = logging.getLogger(__name__)

__all__ = ["DialFailed", "ProxyContext", "TcpListener", "dial", "new_record"]

HIGH_WATER = 1 << 20
LOW_WATER = 1 << 18


@dataclass(slots=True)
class ProxyContext:
    """What every listener of one proxier shares."""
    node: str
    balancer: LoadBalancer
    ring: FlowRing
    sockets: SocketMaker
    dial_timeouts: tuple[float, ...] = field(
        default_factory=lambda: tuple(DIAL_BACKOFF * 2 ** i for i in range(DIAL_TRIES)))
    half_close_timeout: float = 10.0
    record: bool = True  # benchmarks turn the flow recorder off to measure its cost
    mesh: MeshState | None = None  # the mesh's route table and balancer (knet/mesh), if any
    guard: Guard | None = None  # mTLS and authorization (knet/mesh/guard.py), if any

    def emit(self, rec: FlowRecord) -> None:
        if self.guard is not None:
            self.guard.annotate(rec)
        if self.record:
            self.ring.record(rec)


class DialFailed(Exception):
    def __init__(self, message: str, *, pick: Pick, tries: int) -> None:
        super().__init__(message)
        self.pick = pick
        self.tries = tries


async def dial(ctx: ProxyContext, key: str, client_ip: str, pick: Pick) -> tuple[
        socket.socket, Pick, int]:
    """Connect to pick's endpoint, re-picking after each failure; (socket, pick, retries)."""
    loop = asyncio.get_running_loop()
    error = ""
    for attempt, timeout in enumerate(ctx.dial_timeouts):
        if attempt:
            pick = ctx.balancer.report_failure(key, client_ip, pick.endpoint)
        sock = ctx.sockets.new()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        addr = ctx.guard.target(pick.endpoint) if ctx.guard is not None else (
            pick.endpoint.ip, pick.endpoint.port)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, addr), timeout)
            return sock, pick, attempt
        except (TimeoutError, OSError) as exc:
            sock.close()
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            log.info("%s: dial %s failed (%s), try %d/%d", key, pick.endpoint.addr, error,
                     attempt + 1, len(ctx.dial_timeouts))
    raise DialFailed(f"{key}: no endpoint answered after {len(ctx.dial_timeouts)} tries; "
                     f"last {pick.endpoint.addr}: {error}", pick=pick,
                     tries=len(ctx.dial_timeouts))


def new_record(ctx: ProxyContext, sp: ServicePort, protocol: str,
               peer: tuple[str, int]) -> FlowRecord:
    return FlowRecord(time=time.time(), node=ctx.node, protocol=protocol, client_ip=peer[0],
                      client_port=peer[1], service=sp.service, service_port=sp.port,
                      port_name=sp.port_name)


def _fill(rec: FlowRecord, pick: Pick, retries: int) -> None:
    rec.endpoint_ip, rec.endpoint_port = pick.endpoint.ip, pick.endpoint.port
    rec.endpoint_pod, rec.reason, rec.retries = pick.endpoint.pod, pick.reason, retries
    rec.algorithm = pick.algorithm


class _Upstream(asyncio.Protocol):
    __slots__ = ("conn",)

    def __init__(self, conn: _Conn) -> None:
        self.conn = conn

    def data_received(self, data: bytes) -> None:
        c = self.conn
        c.received += len(data)
        if c.half:
            c.last = time.monotonic()
        c.down.write(data)

    def eof_received(self) -> bool:
        self.conn.got_eof(upstream=True)
        return True

    def pause_writing(self) -> None:
        self.conn.down.pause_reading()

    def resume_writing(self) -> None:
        self.conn.down.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.lost(exc)


class _Conn(asyncio.Protocol):
    """One client connection (the downstream protocol) and its upstream."""

    def __init__(self, listener: TcpListener) -> None:
        self.listener = listener
        self.down: asyncio.Transport = None  # type: ignore[assignment]
        self.up: asyncio.Transport | None = None
        self.sent = self.received = 0
        self.half = False
        self.eofs: set[bool] = set()
        self.last = self.start = 0.0
        self.rec: FlowRecord | None = None
        self.early: list[bytes] = []
        self.verdict = FORWARDED
        self.done = False
        self.pick: Pick | None = None  # released to the balancer when the connection ends

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.down = transport  # type: ignore[assignment]
        self.start = time.monotonic()
        ln = self.listener
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.rec = new_record(ln.ctx, ln.sp, "tcp", peer)
        refused = ln.ctx.guard.admit(ln.sp, self.rec) if ln.ctx.guard is not None else ""
        if refused:
            self._reset(REFUSED, refused)
            return
        try:
            pick = ln.ctx.balancer.next_endpoint(ln.sp.key, peer[0])
        except NoEndpoints:
            self._reset(REFUSED, "no ready endpoints")
            return
        self.pick = pick
        self.down.pause_reading()
        ln.track(asyncio.get_running_loop().create_task(self._connect(pick)))

    async def _connect(self, pick: Pick) -> None:
        ln = self.listener
        assert self.rec is not None
        try:
            sock, pick, retries = await dial(ln.ctx, ln.sp.key, self.rec.client_ip, pick)
        except (DialFailed, NoEndpoints) as exc:
            if isinstance(exc, DialFailed):
                _fill(self.rec, exc.pick, exc.tries - 1)
                self.pick = exc.pick
            self._reset(ERROR, str(exc))
            return
        _fill(self.rec, pick, retries)
        self.pick = pick
        if self.done:
            sock.close()
            return
        loop = asyncio.get_running_loop()
        try:
            if ln.ctx.guard is not None:
                up, _ = await ln.ctx.guard.wrap(lambda: _Upstream(self), sock, pick.endpoint)
            else:
                up, _ = await loop.create_connection(lambda: _Upstream(self), sock=sock)
        except OSError as exc:
            sock.close()
            self._reset(ERROR, f"upstream {pick.endpoint.addr}: {exc}")
            return
        self.up = up
        up.set_write_buffer_limits(HIGH_WATER, LOW_WATER)
        self.down.set_write_buffer_limits(HIGH_WATER, LOW_WATER)
        if self.done:
            up.close()
            return
        for data in self.early:
            up.write(data)
        self.early.clear()
        if self.eofs == {False}:
            up.write_eof()
        self.down.resume_reading()

    def data_received(self, data: bytes) -> None:
        self.sent += len(data)
        if self.half:
            self.last = time.monotonic()
        if self.up is None:  # early bytes (uvloop may read once before pause takes effect)
            self.early.append(data)
            self.down.pause_reading()
            return
        self.up.write(data)

    def eof_received(self) -> bool:
        self.got_eof(upstream=False)
        return True

    def pause_writing(self) -> None:
        if self.up is not None:
            self.up.pause_reading()

    def resume_writing(self) -> None:
        if self.up is not None:
            self.up.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost(exc)

    def got_eof(self, *, upstream: bool) -> None:
        other = self.down if upstream else self.up
        self.eofs.add(upstream)
        if len(self.eofs) == 2:
            self.close()
            return
        if other is not None and other.can_write_eof() and not other.is_closing():
            other.write_eof()
        elif other is not None and not upstream and not other.is_closing():
            other.close()  # TLS (the mesh's mTLS hop) has no half-close: end it, flushed
        if not self.half:
            self.half = True
            self.last = time.monotonic()
            asyncio.get_running_loop().call_later(self.listener.ctx.half_close_timeout,
                                                  self._check_idle)

    def _check_idle(self) -> None:
        if self.done:
            return
        idle = time.monotonic() - self.last
        timeout = self.listener.ctx.half_close_timeout
        if idle >= timeout:
            self.verdict = TIMEOUT
            self.rec.error = f"half-closed and idle for {timeout:g}s"  # type: ignore[union-attr]
            self.close(abort=True)
        else:
            asyncio.get_running_loop().call_later(timeout - idle, self._check_idle)

    def lost(self, exc: Exception | None) -> None:
        if exc is not None and self.rec is not None and not self.rec.error:
            self.rec.error = str(exc)
        self.close(abort=exc is not None)

    def close(self, *, abort: bool = False) -> None:
        for t in (self.down, self.up):
            if t is not None and not t.is_closing():
                t.abort() if abort else t.close()
        self._finish()

    def _reset(self, verdict: str, error: str) -> None:
        self.verdict = verdict
        if self.rec is not None:
            self.rec.error = error
        set_rst_on_close(self.down.get_extra_info("socket"))
        self.close(abort=True)

    def _finish(self) -> None:
        if self.done:
            return
        self.done = True
        if self.pick is not None:
            self.listener.ctx.balancer.release(self.listener.sp.key, self.pick.endpoint)
        rec = self.rec
        if rec is not None:
            rec.bytes_sent, rec.bytes_received = self.sent, self.received
            rec.duration, rec.verdict = time.monotonic() - self.start, self.verdict
            self.listener.ctx.emit(rec)


class TcpListener:
    """Accepts on ip:port (inside the node's netns) for one service port."""

    def __init__(self, ctx: ProxyContext, sp: ServicePort, *, ip: str, port: int) -> None:
        self.ctx, self.sp, self.ip, self.port = ctx, sp, ip, port
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"<TcpListener {self.sp.key} {self.ip}:{self.port}>"

    async def start(self) -> None:
        sock = self.ctx.sockets.listener(self.ip, self.port)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Conn(self), sock=sock, backlog=1024)

    def protocol(self) -> asyncio.Protocol:
        """The protocol for a connection accepted elsewhere (the mesh's in-pod listener)."""
        return _Conn(self)

    def track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop accepting; connections already spliced carry on until they end."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
