"""The upstream leg of the L7 path: keep-alive HTTP/1.1 connections to endpoints, pooled.

An `Upstream` carries one exchange at a time for an owner (the client side, `http.py`): it
writes the request, parses the response head and reports it (`on_head`), then relays the
body to the client's transport byte for byte, finding its end from Content-Length or the
chunked framing, and reports `on_done`. Everything is a callback on the event loop: no task
or future per request, which is what makes the path fast. Only a dial runs as a coroutine.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Protocol

from knet.proxy.balancer import Endpoint
from knet.proxy.httpwire import BadMessage, Chunked, Head, parse_head
from knet.proxy.sockets import SocketMaker

__all__ = ["Owner", "Pool", "Upstream"]

IDLE_PER_ENDPOINT = 64


class Owner(Protocol):
    def on_head(self, up: Upstream, head: Head) -> None: ...
    def on_done(self, up: Upstream, *, reusable: bool, complete: bool) -> None: ...
    def on_failed(self, up: Upstream, error: str) -> None: ...


class Upstream(asyncio.Protocol):
    def __init__(self, pool: Pool, endpoint: Endpoint) -> None:
        self.pool, self.endpoint = pool, endpoint
        self.transport: asyncio.Transport | None = None
        self.owner: Owner | None = None
        self.buf = bytearray()
        self.head: Head | None = None
        self.sink: asyncio.Transport | None = None
        self.head_only = False
        self.reused = False
        self.chunked: Chunked | None = None
        self.remaining: int | None = None
        self.received = 0
        self.reusable = True
        self.closed = False

    def __repr__(self) -> str:
        return f"<Upstream {self.endpoint.addr}{' busy' if self.owner else ''}>"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def begin(self, owner: Owner, data: bytes, *, head_only: bool, reused: bool) -> None:
        self.owner, self.head, self.sink = owner, None, None
        self.head_only, self.reused, self.received = head_only, reused, 0
        self.transport.write(data)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        if self.sink is not None:
            self._body(data)
            return
        owner = self.owner
        if owner is None or self.head is not None:
            self.close()  # bytes nobody asked for: the connection cannot be trusted
            return
        self.buf += data
        while True:
            try:
                head = parse_head(self.buf, response=True)
            except BadMessage as exc:
                self._fail(f"bad response: {exc}")
                return
            if head is None:
                return
            status = int(head.start[1])
            if 100 <= status < 200 and status != 101:
                del self.buf[:head.size]  # interim (100 Continue): the final head follows
                continue
            self.head = head
            owner.on_head(self, head)
            return

    def relay(self, sink: asyncio.Transport, prefix: bytes) -> None:
        """Write prefix (the rewritten head) and then the body to sink; on_done at the end."""
        head = self.head
        assert head is not None
        status = int(head.start[1])
        if self.head_only or status in (204, 304):
            self.remaining, self.chunked = 0, None
        elif head.chunked:
            self.remaining, self.chunked = None, Chunked()
        else:
            self.remaining, self.chunked = head.length, None
        self.reusable = not head.close
        body = bytes(self.buf[head.size:])
        self.buf.clear()
        self.sink = sink
        self.received = len(prefix)
        if self.remaining == 0:
            sink.write(prefix)
            self._end(reusable=self.reusable and not body)
            return
        n = self._take(body)
        sink.write(prefix + body[:n] if n < len(body) else prefix + body)
        self._after(n, len(body))

    def _take(self, data: bytes) -> int:
        """How many bytes of data belong to the body."""
        if self.chunked is not None:
            return self.chunked.feed(data)
        if self.remaining is None:
            return len(data)
        n = min(self.remaining, len(data))
        self.remaining -= n
        return n

    def _after(self, n: int, got: int) -> None:
        self.received += n
        if (self.chunked is not None and self.chunked.done) or self.remaining == 0:
            self._end(reusable=self.reusable and n == got)

    def _body(self, data: bytes) -> None:
        n = self._take(data)
        self.sink.write(data[:n] if n < len(data) else data)  # type: ignore[union-attr]
        self._after(n, len(data))

    def _end(self, *, reusable: bool) -> None:
        owner, self.owner, self.sink = self.owner, None, None
        if owner is not None:
            owner.on_done(self, reusable=reusable, complete=True)

    def _fail(self, error: str) -> None:
        owner, self.owner = self.owner, None
        self.close()
        if owner is not None:
            owner.on_failed(self, error)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        owner, self.owner = self.owner, None
        if owner is None:
            return
        if self.sink is not None:  # mid-body: whole only if the close delimits the body
            whole = self.remaining is None and self.chunked is None
            self.sink = None
            owner.on_done(self, reusable=False, complete=whole)
        else:
            owner.on_failed(self, f"{self.endpoint.addr} closed the connection"
                            + (f" ({exc})" if exc else ""))

    def close(self) -> None:
        """Close without telling the owner (it is the one asking, or there is none)."""
        self.owner = None
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Pool:
    """Idle keep-alive upstream connections per endpoint (LIFO: the warmest first)."""

    def __init__(self, sockets: SocketMaker) -> None:
        self.sockets = sockets
        self.idle: dict[Endpoint, list[Upstream]] = {}

    def take(self, ep: Endpoint) -> Upstream | None:
        conns = self.idle.get(ep)
        while conns:
            up = conns.pop()
            if not up.closed and up.transport is not None and not up.transport.is_closing():
                return up
        return None

    def give(self, up: Upstream) -> None:
        conns = self.idle.setdefault(up.endpoint, [])
        if len(conns) < IDLE_PER_ENDPOINT and not up.closed:
            conns.append(up)
        else:
            up.close()

    async def connect(self, ep: Endpoint, timeout: float) -> Upstream:
        loop = asyncio.get_running_loop()
        sock = self.sockets.new()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (ep.ip, ep.port)), timeout)
            _, up = await loop.create_connection(lambda: Upstream(self, ep), sock=sock)
        except BaseException:
            sock.close()
            raise
        return up

    def close(self) -> None:
        for conns in self.idle.values():
            for up in conns:
                up.close()
        self.idle.clear()
