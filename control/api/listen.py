"""The API server's listening sockets, with kube-apiserver's limits on slow and large heads.

kube-apiserver's secure serving (k8s.io/apiserver secure_serving.go) sets ReadHeaderTimeout
32 s, IdleTimeout 90 s and MaxHeaderBytes 1 MiB on its http.Server. aiohttp has header size
limits (passed to the runner as `HANDLER_ARGS`) and an idle keep-alive timeout, but no header
read timeout: a client that sends one header line every few seconds held its connection (and
a TLS session) forever. `HeadDeadline` wraps each connection's protocol and aborts the
connection when its request head is not complete `head_timeout` seconds after it was opened.
Key design choice: the wrapper only looks for the blank line that ends a head (no parsing,
a 3-byte carry between reads) and steps aside after the first head, leaving later heads on a
kept-alive connection to aiohttp's idle timeout (the handler waiting for a head that never
completes is idle).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

__all__ = ["HANDLER_ARGS", "HEAD_TIMEOUT", "HeadDeadline", "listen"]

HEAD_TIMEOUT = 32.0      # seconds for a connection's first request head (Go: ReadHeaderTimeout)
IDLE_TIMEOUT = 90.0      # seconds a kept-alive connection may wait for its next request
# aiohttp refuses (400/431) a request line or header field over these, or too many headers.
HANDLER_ARGS: dict[str, Any] = {"max_line_size": 16 * 1024, "max_field_size": 16 * 1024,
                                "max_headers": 128, "keepalive_timeout": IDLE_TIMEOUT}


class HeadDeadline(asyncio.Protocol):
    """One connection's protocol (aiohttp's request handler), closed if its first request
    head has not arrived in full within `timeout` seconds."""

    def __init__(self, inner: asyncio.Protocol, timeout: float) -> None:
        self._inner = inner
        self._timeout = timeout
        self._timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._carry = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._timeout, self._expire)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._timer is not None:
            seen = self._carry + data
            if b"\n\r\n" in seen or b"\n\n" in seen:       # the blank line ending a head
                self._disarm()
            else:
                self._carry = seen[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._carry = b""

    def _expire(self) -> None:
        self._timer = None
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        peer = transport.get_extra_info("peername")
        log.warning("connection from %s: no complete request head within %.0f s; closing it",
                    peer, self._timeout)
        abort: Callable[[], None] | None = getattr(transport, "abort", None)
        if abort is not None:
            abort()
        else:
            transport.close()


async def listen(runner: web.BaseRunner, host: str, port: int, *,
                 ssl_context: ssl.SSLContext | None,
                 head_timeout: float = HEAD_TIMEOUT) -> asyncio.AbstractServer:
    """Serve `runner`'s application on host:port, each connection under a `HeadDeadline`.
    The caller closes the returned server (before `runner.cleanup()`)."""
    handler_factory = runner.server
    if handler_factory is None:
        raise RuntimeError("listen: call runner.setup() first")

    def protocol() -> asyncio.Protocol:
        return HeadDeadline(handler_factory(), head_timeout)

    loop = asyncio.get_running_loop()
    return await loop.create_server(  # the TLS handshake gets no longer than a head
        protocol, host, port, ssl=ssl_context, reuse_address=True,
        ssl_handshake_timeout=head_timeout if ssl_context is not None else None)
