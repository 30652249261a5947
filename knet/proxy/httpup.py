"""The upstream leg of the L7 path: keep-alive HTTP/1.1 connections to endpoints, pooled.

An `Upstream` carries one exchange at a time for an owner (the client side, `http.py`): it
writes the request, reads the response strictly (http1.ResponseReader: a malformed one is a
502, never relayed), reports the head (`on_head`), then relays the body to the client's
transport as llhttp delivers it (Content-Length bodies as they are, chunked ones re-chunked)
and reports `on_done`; bytes after the response make the connection unusable. All of it
runs in callbacks on the event loop: no task or future per request, which is what makes
the path fast. Only a dial runs as a coroutine. With source IP preservation an upstream
connection is bound to its client's address (`source`), and the pool is per (endpoint,
source): an idle connection of one client never carries another's request.
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING, Protocol

from knet.proxy.balancer import Endpoint
from knet.proxy.http1 import Reject, Response, ResponseReader
from knet.proxy.sockets import SocketMaker

if TYPE_CHECKING:
    from knet.mesh.guard import Guard

__all__ = ["Owner", "Pool", "Upstream", "shadow"]

IDLE_PER_ENDPOINT = 64


class Owner(Protocol):
    def on_head(self, up: Upstream, head: Response) -> None: ...
    def on_done(self, up: Upstream, *, reusable: bool, complete: bool,
                error: str = "") -> None: ...
    def on_failed(self, up: Upstream, error: str, *, retry: bool = True) -> None: ...


class Upstream(asyncio.Protocol):
    def __init__(self, pool: Pool, endpoint: Endpoint, source: str = "") -> None:
        self.pool, self.endpoint, self.source = pool, endpoint, source  # "": the node's
        self.transport: asyncio.Transport | None = None
        self.owner: Owner | None = None
        self.reader = ResponseReader()
        self.sink: asyncio.Transport | None = None
        self.reused = False
        self.received = 0
        self.closed = False
        self.sockname: tuple[str, int] = ("", 0)

    def __repr__(self) -> str:
        return f"<Upstream {self.endpoint.addr}{' busy' if self.owner else ''}>"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.sockname = transport.get_extra_info("sockname") or ("", 0)  # what the endpoint sees

    def begin(self, owner: Owner, data: bytes, *, head_only: bool, reused: bool) -> None:
        self.owner, self.sink = owner, None
        self.reader.reset()
        self.reader.head_only, self.reused, self.received = head_only, reused, 0
        self.transport.write(data)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        owner, r = self.owner, self.reader
        if owner is None:
            self.close()  # bytes nobody asked for: the connection cannot be trusted
            return
        try:
            r.feed(data)
        except Reject as exc:
            error = f"bad response from {self.endpoint.addr}: {exc.why}"
            if self.sink is None:
                self._fail(error, retry=False)  # the request did reach it: no retry
            else:
                self._end(reusable=False, complete=False, error=error)
            return
        if self.sink is not None:
            self._flush()
        elif r.head is not None:
            owner.on_head(self, r.head)  # which calls relay(), or closes this connection

    def relay(self, sink: asyncio.Transport, prefix: bytes) -> None:
        """Write prefix (the rewritten head) and then the body to sink; on_done at the end."""
        self.sink = sink
        self.received = 0
        self._flush(prefix)

    def _flush(self, prefix: bytes = b"") -> None:
        """Write what the reader has for the client, in one write (one send)."""
        r = self.reader
        if r.body or prefix:
            data = prefix + (r.body[0] if len(r.body) == 1 else b"".join(r.body))
            r.body.clear()
            self.received += len(data)
            self.sink.write(data)  # type: ignore[union-attr]
        if r.done:
            head = r.head
            assert head is not None
            self._end(reusable=head.keep and r.usable and not r.extra, complete=True)

    def _end(self, *, reusable: bool, complete: bool, error: str = "") -> None:
        owner, self.owner, self.sink = self.owner, None, None
        if not reusable:
            self.close()
        if owner is not None:
            owner.on_done(self, reusable=reusable, complete=complete, error=error)

    def _fail(self, error: str, *, retry: bool = True) -> None:
        owner, self.owner = self.owner, None
        self.close()
        if owner is not None:
            owner.on_failed(self, error, retry=retry)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        owner, r = self.owner, self.reader
        if owner is None:
            return
        if self.sink is not None:  # mid-body: whole only if the close delimits the body
            head = r.head
            self._flush()
            if self.owner is not None:
                whole = head is not None and head.length is None and not head.chunked
                self._end(reusable=False, complete=whole,
                          error="" if whole else f"{self.endpoint.addr} closed mid-body")
        else:
            self._fail(f"{self.endpoint.addr} closed the connection"
                       + (f" ({exc})" if exc else ""))

    def close(self) -> None:
        """Close without telling the owner (it is the one asking, or there is none)."""
        self.owner = None
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Pool:
    """Idle keep-alive upstream connections per endpoint (LIFO: the warmest first)."""

    def __init__(self, sockets: SocketMaker, guard: Guard | None = None) -> None:
        self.sockets, self.guard = sockets, guard  # guard: the mesh's mTLS hop, if any
        self.idle: dict[tuple[Endpoint, str], list[Upstream]] = {}

    def take(self, ep: Endpoint, source: str = "") -> Upstream | None:
        conns = self.idle.get((ep, source))
        while conns:
            up = conns.pop()
            if not up.closed and up.transport is not None and not up.transport.is_closing():
                return up
        return None

    def give(self, up: Upstream) -> None:
        conns = self.idle.setdefault((up.endpoint, up.source), [])
        if len(conns) < IDLE_PER_ENDPOINT and not up.closed:
            conns.append(up)
        else:
            up.close()

    async def connect(self, ep: Endpoint, timeout: float, source: str = "") -> Upstream:
        """A fresh connection to ep; from `source` (bound transparently) when given."""
        loop = asyncio.get_running_loop()
        sock = self.sockets.upstream(bind=(source, 0) if source else None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        guard = self.guard
        try:
            addr = guard.target(ep) if guard is not None else (ep.ip, ep.port)
            await asyncio.wait_for(loop.sock_connect(sock, addr), timeout)
            if guard is not None:
                _, up = await guard.wrap(lambda: Upstream(self, ep, source), sock, ep)
            else:
                _, up = await loop.create_connection(lambda: Upstream(self, ep, source),
                                                     sock=sock)
        except BaseException:
            sock.close()
            raise
        return up

    def close(self) -> None:
        for conns in self.idle.values():
            for up in conns:
                up.close()
        self.idle.clear()


async def shadow(sockets: SocketMaker, ep: Endpoint, data: bytes, *,
                 timeout: float = 5.0) -> None:
    """A mirrored request (the mesh's `mirror`): sent to ep, its answer read and dropped,
    fire-and-forget; any failure only ends it (the client never waits on a mirror)."""
    loop = asyncio.get_running_loop()
    sock = sockets.new()
    try:
        await asyncio.wait_for(loop.sock_connect(sock, (ep.ip, ep.port)), timeout)
        await asyncio.wait_for(loop.sock_sendall(sock, data), timeout)
        await asyncio.wait_for(loop.sock_recv(sock, 65536), timeout)
    except (TimeoutError, OSError):
        pass
    finally:
        sock.close()
