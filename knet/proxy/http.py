"""The L7 "mesh" path for ports with `appProtocol: http`: a lean HTTP/1.1 reverse proxy.

A meshed port (in the proxier's `ctx.mesh` table: ambient namespace or appProtocol http)
takes its decisions from knet/mesh (`exchange.plan`: route, weighted backend, LB, retries
on another endpoint, per-try/route timeouts, faults, header ops, rewrite, mirror).

Both legs are `asyncio.Protocol`s on uvloop (aiohttp's client was the cost: a plain aiohttp
reverse proxy did 3,600 req/s here). Each request is balanced on its own (round-robin or
ClientIP affinity), retried on another endpoint after a connect failure or a 503 (count
configurable), bounded by a per-request timeout to the response head (504 when it passes),
and answered with `x-knet-upstream: <pod>`. Upstream connections are kept alive in a pool
per endpoint (httpup.py). The exchange runs in callbacks, no task per request. Request
bodies are read whole (up to 8 MiB, so a retry can resend them); response bodies stream
with back-pressure. Parsing is strict, both ways (http1.py, on llhttp): a malformed request
gets a short 4xx/5xx with Connection: close and a REJECTED flow, and no byte of it is
forwarded; a head must arrive within header_timeout (slowloris). One flow record each.
"""

from __future__ import annotations

import asyncio
import time

from knet.proxy.config import ServicePort
from knet.proxy.httpconn import ClientConnection
from knet.proxy.httpup import Pool
from knet.proxy.tcp import ProxyContext

__all__ = ["HttpListener"]


class HttpListener:
    """The L7 path for one service port on ip:port inside the node's netns."""

    def __init__(self, ctx: ProxyContext, sp: ServicePort, *, ip: str, port: int,
                 retries: int = 2, timeout: float = 15.0, header_timeout: float = 30.0,
                 idle_timeout: float = 75.0) -> None:
        self.ctx, self.sp, self.ip, self.port = ctx, sp, ip, port
        self.retries, self.timeout = retries, timeout
        self.header_timeout, self.idle_timeout = header_timeout, idle_timeout
        self.host = f"{ip}:{port}".encode()  # for HTTP/1.0 requests without a Host
        self.pool = Pool(ctx.sockets, ctx.guard)
        self.waiting: dict[ClientConnection, float] = {}  # client -> deadline of its response head
        self.deadlines: dict[ClientConnection, float] = {}  # idle client -> deadline of its next step
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"<HttpListener {self.sp.key} {self.ip}:{self.port}>"

    async def start(self) -> None:
        sock = self.ctx.sockets.listener(self.ip, self.port)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: ClientConnection(self), sock=sock, backlog=1024)
        self._sweep()

    def _sweep(self) -> None:
        """One timer per listener, not one per request: ends requests past their deadline."""
        now = time.monotonic()
        for client in [c for c, deadline in self.waiting.items() if deadline <= now]:
            self.waiting.pop(client, None)
            client.on_timeout()
        for client in [c for c, deadline in self.deadlines.items() if deadline <= now]:
            self.deadlines.pop(client, None)
            client.on_deadline()
        interval = max(0.02, min(0.5, self.timeout / 10, self.header_timeout / 10))
        self._sweeper = asyncio.get_running_loop().call_later(interval, self._sweep)

    def protocol(self) -> asyncio.Protocol:
        """The protocol for a connection accepted elsewhere (the mesh's in-pod listener)."""
        if self._sweeper is None:
            self._sweep()
        return ClientConnection(self)

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
