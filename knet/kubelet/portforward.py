"""pods/portforward on the kubelet API: TCP connections into a pod's network namespace.

Two wire forms, both over the WebSocket the API server relays:
- kubectl 1.32: SPDY/3.1 tunnelled in binary messages (`SPDY/3.1+portforward.k8s.io`); per
  local connection it opens an error stream and a data stream (headers streamtype, port,
  requestid); knet.kubelet.spdy reads the frames.
- the Python client: `v4.channel.k8s.io` with `?ports=P1,P2`: channels 2i (data) and 2i+1
  (error) for port i, each first announced by the server with the port in 2 little-endian
  bytes.
As the real kubelet does (through the CRI), the connection is made inside the pod's netns to
localhost:PORT, so a port bound only on 127.0.0.1 is reachable; a refusal is reported on the
error stream in containerd's words.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from knet.dataplane.nsutil import in_netns, netns_path
from knet.kubelet import spdy

log = logging.getLogger(__name__)

SPDY_PROTOCOL = "SPDY/3.1+portforward.k8s.io"
CHANNEL_PROTOCOL = "v4.channel.k8s.io"
PROTOCOLS = (SPDY_PROTOCOL, CHANNEL_PROTOCOL, "v4.base64.channel.k8s.io")
Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Dial = Callable[[int], Awaitable[Conn]]
Send = Callable[[bytes], Awaitable[None]]


class ForwardError(OSError):
    """A port in the pod that cannot be reached, in containerd's words."""


def netns_dialer(netns: str | None, sandbox_id: str) -> Dial:
    """Connect to localhost:PORT inside netns (the current one when None), IPv4 then IPv6."""
    async def dial(port: int) -> Conn:
        errors = []
        for family, host, label in ((socket.AF_INET, "127.0.0.1", "IPv4: dial tcp4"),
                                    (socket.AF_INET6, "::1", "IPv6 dial tcp6")):
            try:
                if netns:
                    with in_netns(netns):
                        sock = socket.socket(family, socket.SOCK_STREAM)
                else:
                    sock = socket.socket(family, socket.SOCK_STREAM)
            except OSError as exc:
                errors.append(f"{label}: {exc.strerror}")
                continue
            sock.setblocking(False)
            addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            try:
                await asyncio.wait_for(asyncio.get_running_loop().sock_connect(
                    sock, (host, port)), 10)
                return await asyncio.open_connection(sock=sock)
            except (OSError, TimeoutError) as exc:
                sock.close()
                why = (os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno
                       else "i/o timeout").lower()
                if isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED:
                    why = "connection refused"
                errors.append(f"{label} {addr}: connect: {why}")
        ns = netns_path(netns) if netns else "the agent's network namespace"
        raise ForwardError(
            f"error forwarding port {port} to pod {sandbox_id}, uid : failed to execute "
            f'portforward in network namespace "{ns}": failed to connect to localhost:{port} '
            f'inside namespace "{sandbox_id}", {" ".join(errors)} ')
    return dial


async def _pod_to_client(reader: asyncio.StreamReader, send: Callable[[bytes], Awaitable[None]]
                         ) -> None:
    while chunk := await reader.read(65536):
        await send(chunk)


def _close(writer: asyncio.StreamWriter | None) -> None:
    if writer is not None and not writer.is_closing():
        writer.close()


# -- kubectl: SPDY streams ---------------------------------------------------------------

@dataclass
class _Request:
    port: int
    error_stream: int = 0
    data_stream: int = 0
    writer: asyncio.StreamWriter | None = None
    pending: list[bytes] = field(default_factory=list)
    client_done: bool = False
    connected: asyncio.Event = field(default_factory=asyncio.Event)


class SpdyForwarder:
    """One tunnelled SPDY connection: streams in, pod connections out."""

    def __init__(self, send: Send, dial: Dial) -> None:
        self._send, self._dial = send, dial
        self._parser, self._writer = spdy.Parser(), spdy.Writer()
        self._requests: dict[str, _Request] = {}
        self._by_stream: dict[int, _Request] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()

    async def _out(self, frame: bytes) -> None:
        async with self._lock:
            await self._send(frame)

    async def feed(self, data: bytes) -> None:
        for frame in self._parser.feed(data):
            await self._frame(frame)

    async def _frame(self, f: spdy.Frame) -> None:
        if f.type == spdy.SYN_STREAM:
            await self._open(f)
        elif f.type == 0:
            req = self._by_stream.get(f.stream)
            if req is None or f.stream != req.data_stream:
                return          # the error stream's FIN, or a stream we already closed
            if f.data:
                if req.writer is not None:
                    req.writer.write(f.data)
                    await req.writer.drain()
                else:
                    req.pending.append(f.data)
            if f.fin:
                req.client_done = True
                if req.writer is not None and req.writer.can_write_eof():
                    req.writer.write_eof()
        elif f.type == spdy.RST_STREAM:
            req = self._by_stream.get(f.stream)
            if req is not None:
                _close(req.writer)
        elif f.type == spdy.PING:
            await self._out(self._writer.ping(f.value))
        elif f.type == spdy.GOAWAY:
            await self.close()

    async def _open(self, f: spdy.Frame) -> None:
        kind, rid = f.headers.get("streamtype"), f.headers.get("requestid", "")
        try:
            port = int(f.headers.get("port", ""))
        except ValueError:
            await self._out(self._writer.rst(f.stream, spdy.RST_PROTOCOL_ERROR))
            return
        if kind not in ("data", "error"):
            await self._out(self._writer.rst(f.stream, spdy.RST_PROTOCOL_ERROR))
            return
        req = self._requests.setdefault(rid, _Request(port))
        self._by_stream[f.stream] = req
        await self._out(self._writer.syn_reply(f.stream))
        if kind == "error":
            req.error_stream = f.stream
        else:
            req.data_stream = f.stream
            task = asyncio.ensure_future(self._forward(req))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _forward(self, req: _Request) -> None:
        message = b""
        try:
            reader, req.writer = await self._dial(req.port)
            for chunk in req.pending:
                req.writer.write(chunk)
            req.pending.clear()
            if req.client_done and req.writer.can_write_eof():
                req.writer.write_eof()
            await _pod_to_client(reader, lambda b: self._out(spdy.Writer.data(
                req.data_stream, b)))
        except ForwardError as exc:
            message = str(exc).encode()
        except (OSError, ConnectionError) as exc:
            log.debug("portforward %d: %s", req.port, exc)
        finally:
            _close(req.writer)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self._out(spdy.Writer.data(req.data_stream, b"", fin=True))
            if req.error_stream:
                await self._out(spdy.Writer.data(req.error_stream, message, fin=True))

    async def close(self) -> None:
        for req in self._requests.values():
            _close(req.writer)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


# -- the Python client: channel pairs --------------------------------------------------------

async def _channels(ws: web.WebSocketResponse, ports: list[int], dial: Dial) -> None:
    conns: list[asyncio.Future[asyncio.StreamWriter | None]] = [
        asyncio.get_running_loop().create_future() for _ in ports]

    async def one(i: int, port: int) -> None:
        try:
            reader, writer = await dial(port)
        except ForwardError as exc:
            conns[i].set_result(None)
            await ws.send_bytes(bytes([2 * i + 1]) + str(exc).encode())
            return
        conns[i].set_result(writer)
        try:
            await _pod_to_client(reader, lambda b: ws.send_bytes(bytes([2 * i]) + b))
        finally:
            _close(writer)

    for i, port in enumerate(ports):
        prefix = port.to_bytes(2, "little")
        await ws.send_bytes(bytes([2 * i]) + prefix)
        await ws.send_bytes(bytes([2 * i + 1]) + prefix)
    tasks = [asyncio.ensure_future(one(i, p)) for i, p in enumerate(ports)]

    async def inp() -> None:
        async for msg in ws:
            if msg.type != WSMsgType.BINARY or not msg.data:
                continue
            ch, data = msg.data[0], msg.data[1:]
            if ch % 2 or ch // 2 >= len(ports) or not data:
                continue
            w = await conns[ch // 2]       # data sent before the dial completes waits for it
            if w is not None and not w.is_closing():
                w.write(data)
                await w.drain()

    both: list[asyncio.Future[Any]] = [asyncio.ensure_future(inp()), asyncio.gather(*tasks)]
    try:    # until every pod connection ends, or the client goes away
        await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for c in conns:
            if c.done() and c.result() is not None:
                _close(c.result())
        for t in (*both, *tasks):
            t.cancel()
        await asyncio.gather(*both, return_exceptions=True)


async def serve(request: web.Request, dial: Dial) -> web.StreamResponse:
    """The handler body: pick the wire form from the offered subprotocols."""
    if request.headers.get("Upgrade", "").lower() != "websocket":
        raise web.HTTPBadRequest(text="portforward on this kubelet needs a WebSocket upgrade "
                                      f"({SPDY_PROTOCOL} or {CHANNEL_PROTOCOL})")
    ws = web.WebSocketResponse(protocols=PROTOCOLS, max_msg_size=0)
    if ws.can_prepare(request).protocol == SPDY_PROTOCOL:
        await ws.prepare(request)
        fwd = SpdyForwarder(ws.send_bytes, dial)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    await fwd.feed(msg.data)
        except spdy.SpdyError as exc:
            log.info("portforward: closing a bad SPDY stream: %s", exc)
        finally:
            await fwd.close()
        await ws.close()
        return ws
    try:
        ports = [int(p) for v in request.query.getall("ports", []) for p in v.split(",")]
    except ValueError:
        ports = []
    if not ports or not all(0 < p < 65536 for p in ports):
        raise web.HTTPBadRequest(text="portforward: the ports query parameter must list "
                                      "ports between 1 and 65535, e.g. ?ports=8080,9090")
    await ws.prepare(request)
    await _channels(ws, ports, dial)
    await ws.close()
    return ws
