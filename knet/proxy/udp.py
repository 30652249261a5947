"""The L4 UDP data path: a flow per client ip:port, each with its own connected upstream.

The front socket is bound to ClusterIP:port (or a node IP:NodePort) and served by uvloop's
datagram transport (which reads many datagrams per wake-up). Each flow's upstream socket is
connected to the picked endpoint and read with `add_reader` in a drain loop; replies go out
of the front socket, so the client sees them come from ClusterIP:port. One sweeper per
listener ends flows idle longer than the timeout (default 250 ms) and records them.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

from knet.proxy.balancer import NoEndpoints, Pick
from knet.proxy.config import ServicePort
from knet.proxy.flows import ERROR, FORWARDED, REFUSED, FlowRecord
from knet.proxy.tcp import ProxyContext, new_record

log = logging.getLogger(__name__)

__all__ = ["UdpListener"]

MAX_DATAGRAM = 65535


class _Flow:
    __slots__ = ("listener", "client", "sock", "rec", "start", "last", "sent", "received",
                 "verdict")

    def __init__(self, listener: UdpListener, client: tuple[str, int], sock: socket.socket,
                 rec: FlowRecord) -> None:
        self.listener, self.client, self.sock, self.rec = listener, client, sock, rec
        self.start = self.last = time.monotonic()
        self.sent = self.received = 0
        self.verdict = FORWARDED

    def send(self, data: bytes) -> None:
        self.last = time.monotonic()
        self.sent += len(data)
        try:
            self.sock.send(data)
        except BlockingIOError:
            pass  # a full socket buffer drops the datagram, as the network would
        except OSError as exc:
            self.fail(exc)

    def readable(self) -> None:
        front = self.listener.transport
        while True:
            try:
                data = self.sock.recv(MAX_DATAGRAM)
            except BlockingIOError:
                return
            except OSError as exc:  # ICMP port unreachable from the endpoint, ...
                self.fail(exc)
                return
            self.received += len(data)
            self.last = time.monotonic()
            if front is not None:
                front.sendto(data, self.client)

    def fail(self, exc: OSError) -> None:
        self.verdict = ERROR
        self.rec.error = f"{type(exc).__name__}: {exc}"
        self.listener.end(self)


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
            rec.verdict, rec.error = REFUSED, "no ready endpoints"
            self.ctx.emit(rec)
            return None
        sock = self.ctx.sockets.new(socket.SOCK_DGRAM)
        try:
            sock.connect((pick.endpoint.ip, pick.endpoint.port))
        except OSError as exc:
            sock.close()
            rec.verdict, rec.error = ERROR, f"{pick.endpoint.addr}: {exc}"
            self._fill(rec, pick)
            self.ctx.emit(rec)
            return None
        self._fill(rec, pick)
        flow = _Flow(self, client, sock, rec)
        self.flows[client] = flow
        asyncio.get_running_loop().add_reader(sock.fileno(), flow.readable)
        return flow

    @staticmethod
    def _fill(rec: FlowRecord, pick: Pick) -> None:
        rec.endpoint_ip, rec.endpoint_port = pick.endpoint.ip, pick.endpoint.port
        rec.endpoint_pod, rec.reason = pick.endpoint.pod, pick.reason

    def end(self, flow: _Flow) -> None:
        if self.flows.get(flow.client) is not flow:
            return
        del self.flows[flow.client]
        asyncio.get_running_loop().remove_reader(flow.sock.fileno())
        flow.sock.close()
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
        if self.transport is not None:
            self.transport.close()
            self.transport = None
