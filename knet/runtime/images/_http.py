"""A small HTTP/1.1 server on asyncio.Protocol for the built-in images, plus their shared
plumbing: Go-style flag parsing (`-text=x`, `--port 80`) and a `run` that exits 0 on SIGTERM.

Not aiohttp on purpose: importing aiohttp.web costs ~0.5 s of CPU per container start, and
these servers answer small GETs. Keep-alive and pipelining are kept in order: a request is
answered before the next one in the buffer is read.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

MAX_HEAD = 64 * 1024
REASONS = {200: "OK", 201: "Created", 204: "No Content", 301: "Moved Permanently",
           304: "Not Modified", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
           405: "Not Allowed", 408: "Request Timeout", 413: "Payload Too Large",
           431: "Request Header Fields Too Large", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable"}


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    client: tuple[str, int]
    local: tuple[str, int]
    path: str = ""
    query: dict[str, list[str]] = field(default_factory=dict)

    def header(self, name: str, default: str = "") -> str:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), default)

    def arg(self, name: str, default: str = "") -> str:
        return self.query.get(name, [default])[0]


@dataclass
class Response:
    status: int = 200
    body: bytes | str = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


Handler = Callable[[Request], "Response | Awaitable[Response]"]


def _http_date() -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())


class HttpProtocol(asyncio.Protocol):
    def __init__(self, handler: Handler, server_name: str) -> None:
        self.handler, self.server_name = handler, server_name
        self.buf = b""
        self.busy = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._next()

    def _next(self) -> None:
        while self.transport is not None and not self.transport.is_closing():
            req = self._parse()
            if req is None:
                return
            result = self.handler(req)
            if isinstance(result, Response):
                self._send(req, result)
                continue
            self.busy = True
            task = asyncio.ensure_future(result)
            task.add_done_callback(lambda t, r=req: self._done(r, t))
            return

    def _done(self, req: Request, task: asyncio.Future[Response]) -> None:
        self.busy = False
        if task.cancelled():
            return
        exc = task.exception()
        self._send(req, task.result() if exc is None else Response(500, f"{exc}\n"))
        self._next()

    def _parse(self) -> Request | None:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > MAX_HEAD:
                self._fail(431)
            return None
        lines = self.buf[:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            self._fail(400)
            return None
        headers = [(k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in lines[1:])]
        length = next((v for k, v in headers if k.lower() == "content-length"), "0")
        size = int(length) if length.isdigit() else 0
        if len(self.buf) < end + 4 + size:
            return None
        body, self.buf = self.buf[end + 4:end + 4 + size], self.buf[end + 4 + size:]
        assert self.transport is not None
        url = urlsplit(parts[1])
        return Request(parts[0], parts[1], parts[2], headers, body,
                       self.transport.get_extra_info("peername")[:2],
                       self.transport.get_extra_info("sockname")[:2],
                       url.path or "/", parse_qs(url.query, keep_blank_values=True))

    def _fail(self, status: int) -> None:
        req = Request("GET", "/", "HTTP/1.0", [], b"", ("", 0), ("", 0))
        self._send(req, Response(status, f"{REASONS.get(status, '')}\n"), close=True)

    def _send(self, req: Request, resp: Response, *, close: bool = False) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        body = resp.body.encode() if isinstance(resp.body, str) else resp.body
        conn = req.header("connection").lower()
        close = close or conn == "close" or (req.version == "HTTP/1.0" and conn != "keep-alive")
        head = [f"HTTP/1.1 {resp.status} {REASONS.get(resp.status, 'Unknown')}",
                f"Server: {self.server_name}", f"Date: {_http_date()}",
                f"Content-Type: {resp.content_type}", f"Content-Length: {len(body)}",
                "Connection: close" if close else "Connection: keep-alive"]
        head += [f"{k}: {v}" for k, v in resp.headers]
        payload = "\r\n".join(head).encode("latin-1") + b"\r\n\r\n"
        self.transport.write(payload if req.method == "HEAD" else payload + body)
        if close:
            self.transport.close()


async def serve_http(handler: Handler, port: int, *, host: str | None = None,
                     server_name: str = "knet") -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: HttpProtocol(handler, server_name),
                                    host or listen_host(), port, reuse_address=True)


def listen_host() -> str:
    """Where the programs listen: every address of the pod (KNET_LISTEN_HOST overrides)."""
    return os.environ.get("KNET_LISTEN_HOST", "0.0.0.0")


def run(main: Callable[[asyncio.Event], Awaitable[None]], *, name: str) -> int:
    """Runs `main(stop)` until it returns; SIGTERM/SIGINT set `stop`. Exit code 0 after a
    graceful stop, 1 with a one-line message when the program cannot start."""
    async def wrapper() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)
    try:
        asyncio.run(wrapper())
    except OSError as exc:
        sys.stderr.write(f"{name}: {exc}\n")
        return 1
    except UsageError as exc:
        sys.stderr.write(f"{name}: {exc}\n")
        return 2
    return 0


class UsageError(Exception):
    pass


def goflags(argv: list[str], spec: dict[str, object]) -> tuple[dict[str, object], list[str]]:
    """Go `flag`-style parsing: `-name=v`, `--name=v`, `-name v`; booleans take no value
    (`--udp`, `--udp=false`). `spec` maps names to defaults (their type is the flag's type).
    Returns (values, positional args)."""
    values, rest, i = dict(spec), [], 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("-") or arg in ("-", "--"):
            rest.append(arg)
            continue
        name, eq, value = arg.lstrip("-").partition("=")
        if name not in spec:
            raise UsageError(f"flag provided but not defined: -{name}")
        default = spec[name]
        if isinstance(default, bool):
            values[name] = value.lower() not in ("false", "0") if eq else True
            continue
        if not eq:
            if i >= len(argv):
                raise UsageError(f"flag needs an argument: -{name}")
            value, i = argv[i], i + 1
        try:
            values[name] = type(default)(value) if default is not None else value
        except ValueError:
            raise UsageError(f'invalid value "{value}" for flag -{name}') from None
    return values, rest
