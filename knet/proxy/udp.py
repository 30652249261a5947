"""The L4 UDP data path: a flow per client ip:port, each with its own connected upstream.

The front socket is bound to ClusterIP:port (or a node IP:NodePort) and served by uvloop's
datagram transport (which reads many datagrams per wake-up). Each flow's upstream socket is
connected to the picked endpoint and served by a datagram transport of its own; replies go
out of the front socket, so the client sees them come from ClusterIP:port. One sweeper per
listener ends flows idle longer than the timeout (default 250 ms) and records them.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

from knet.proxy.balancer import Endpoint, NoEndpoints, Pick
from knet.proxy.config import ServicePort
from knet.proxy.flows import ERROR, FORWARDED, REFUSED, FlowRecord
from knet.proxy.tcp import ProxyContext, new_record

log = logging.getLogger(__name__)

__all__ = ["UdpListener"]

MAX_PENDING = 64


class _Flow(asyncio.DatagramProtocol):
    """One client ip:port and its own upstream socket, connected to the picked endpoint."""

    def __init__(self, listener: UdpListener, client: tuple[str, int], sock: socket.socket,
                 rec: FlowRecord) -> None:
        self.listener, self.client, self.sock, self.rec = listener, client, sock, rec
        self.start = self.last = time.monotonic()
        self.sent = self.received = 0
        self.verdict = FORWARDED
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: list[bytes] = []  # datagrams that came before the transport
        self.ended = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.ended:
            transport.close()
            return
        for data in self.pending:
            self.transport.sendto(data)  # type: ignore[union-attr]
        self.pending.clear()

    def send(self, data: bytes) -> None:
        self.last = time.monotonic()
        self.sent += len(data)
        if self.transport is None:
            if len(self.pending) < MAX_PENDING:
                self.pending.append(data)
            return
        self.transport.sendto(data)

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.received += len(data)
        self.last = time.monotonic()
        front = self.listener.transport
        if front is not None:
            front.sendto(data, self.client)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable, ...
        self.verdict = ERROR
        self.rec.error = f"{type(exc).__name__}: {exc}"
        self.listener.end(self)

    def close(self) -> None:
        self.ended = True
        if self.transport is not None:
            self.transport.close()
        else:
            self.sock.close()


class _Front(asyncio.DatagramProtocol):
    def __init__(self, listener: UdpListener) -> None:
        self.listener = listener

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        flow = self.listener.flows.get(addr)
        if flow is None:
            flow = self.listener.open_flow(addr)
            if flow is None:
                return
        flow.send(data)

    def error_received(self, exc: Exception) -> None:
        log.debug("%s: front socket error %s", self.listener.sp.key, exc)


class UdpListener:
    """Serves one service port's UDP on ip:port inside the node's netns."""

    def __init__(self, ctx: ProxyContext, sp: ServicePort, *, ip: str, port: int,
                 idle_timeout: float = 0.25) -> None:
        self.ctx, self.sp, self.ip, self.port = ctx, sp, ip, port
        self.idle_timeout = idle_timeout
        self.flows: dict[tuple[str, int], _Flow] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self._refused: dict[tuple[str, int], float] = {}

    def __repr__(self) -> str:
        return f"<UdpListener {self.sp.key} {self.ip}:{self.port} {len(self.flows)} flows>"

    async def start(self) -> None:
        sock = self.ctx.sockets.listener(self.ip, self.port, socket.SOCK_DGRAM)
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(lambda: _Front(self), sock=sock)
        self._arm()

    def open_flow(self, client: tuple[str, int]) -> _Flow | None:
        rec = new_record(self.ctx, self.sp, "udp", client)
        try:
            pick = self.ctx.balancer.next_endpoint(self.sp.key, client[0])
        except NoEndpoints:
            now = time.monotonic()
            if now - self._refused.get(client, -1.0) >= 1.0:  # one record a second per client
                self._refused[client] = now
                if len(self._refused) > 4096:
                    self._refused.clear()
                rec.verdict, rec.error = REFUSED, "no ready endpoints"
                self.ctx.emit(rec)
            return None
        sock = self.ctx.sockets.new(socket.SOCK_DGRAM)
        try:
            sock.connect((pick.endpoint.ip, pick.endpoint.port))
        except OSError as exc:
            sock.close()
            self.ctx.balancer.release(self.sp.key, pick.endpoint)
            rec.verdict, rec.error = ERROR, f"{pick.endpoint.addr}: {exc}"
            self._fill(rec, pick)
            self.ctx.emit(rec)
            return None
        self._fill(rec, pick)
        flow = _Flow(self, client, sock, rec)
        self.flows[client] = flow
        loop = asyncio.get_running_loop()
        task = loop.create_task(loop.create_datagram_endpoint(lambda: flow, sock=sock))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return flow

    @staticmethod
    def _fill(rec: FlowRecord, pick: Pick) -> None:
        rec.endpoint_ip, rec.endpoint_port = pick.endpoint.ip, pick.endpoint.port
        rec.endpoint_pod, rec.reason = pick.endpoint.pod, pick.reason
        rec.algorithm = pick.algorithm

    def end(self, flow: _Flow) -> None:
        if self.flows.get(flow.client) is not flow:
            return
        del self.flows[flow.client]
        flow.close()
        self.ctx.balancer.release(self.sp.key, Endpoint(flow.rec.endpoint_ip,
                                                        flow.rec.endpoint_port))
        rec = flow.rec
        rec.bytes_sent, rec.bytes_received = flow.sent, flow.received
        rec.duration, rec.verdict = flow.last - flow.start, flow.verdict
        self.ctx.emit(rec)

    def _arm(self) -> None:
        delay = max(self.idle_timeout / 2, 0.02)
        self._sweeper = asyncio.get_running_loop().call_later(delay, self._sweep)

    def _sweep(self) -> None:
        now = time.monotonic()
        for flow in [f for f in self.flows.values() if now - f.last > self.idle_timeout]:
            self.end(flow)
        self._arm()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for flow in list(self.flows.values()):
            self.end(flow)
        for task in list(self._tasks):
            task.cancel()
        if self.transport is not None:
            self.transport.close()
            self.transport = None
