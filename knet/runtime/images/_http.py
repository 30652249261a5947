"""Servers for the built-in images on `_loop.Loop`: HTTP/1.1 (keep-alive, pipelining answered
in order, HEAD), UDP request/answer, and a TCP greeting; plus Go-style flag parsing and `run`,
which exits 0 after SIGTERM. Stdlib C modules only (`_socket`), for the start-up reasons
given in _loop.py. A handler may return `Deferred(work)`: `work()` blocks on a thread and
its Response is sent when ready, while the loop keeps serving other connections.
"""

from __future__ import annotations

import _socket
import os
import sys
import time

from knet.runtime.images._loop import Loop

TYPE_CHECKING = False  # not `from typing import ...`: typing costs ~10 ms at each start

if TYPE_CHECKING:
    from collections.abc import Callable

MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024
REASONS = {200: "OK", 201: "Created", 204: "No Content", 301: "Moved Permanently",
           302: "Found", 303: "See Other", 307: "Temporary Redirect", 308: "Permanent Redirect",
           400: "Bad Request", 412: "Precondition Failed", 403: "Forbidden", 404: "Not Found", 405: "Not Allowed",
           413: "Payload Too Large", 417: "Expectation Failed",
           431: "Request Header Fields Too Large", 500: "Internal Server Error",
           503: "Service Unavailable"}


class UsageError(Exception):
    pass


def unquote(text: str) -> str:
    """Percent-decoding of a query component (`+` is a space); bad escapes are kept."""
    return unquote_path(text.replace("+", " "))


def unquote_path(text: str) -> str:
    """Percent-decoding (a `+` stays a `+`); bad escapes are kept."""
    if "%" not in text:
        return text
    first, *rest = text.split("%")
    out = bytearray(first.encode())
    for part in rest:
        try:
            out.append(int(part[:2], 16))
            out += part[2:].encode()
        except ValueError:
            out += b"%" + part.encode()
    return out.decode("utf-8", "replace")


class Request:
    __slots__ = (
        "body",
        "client",
        "headers",
        "local",
        "method",
        "path",
        "query",
        "target",
        "version",
    )

    def __init__(self, method: str, target: str, version: str, headers: list[tuple[str, str]],
                 body: bytes, client: tuple[str, int], local: tuple[str, int]) -> None:
        self.method, self.target, self.version = method, target, version
        self.headers, self.body, self.client, self.local = headers, body, client, local
        path, _, qs = target.partition("?")
        self.path = unquote_path(path)
        self.query: dict[str, list[str]] = {}
        for pair in filter(None, qs.split("&")):
            k, _, v = pair.partition("=")
            self.query.setdefault(unquote(k), []).append(unquote(v))

    def header(self, name: str, default: str = "") -> str:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), default)

    def arg(self, name: str, default: str = "") -> str:
        return self.query.get(name, [default])[0]


class Response:
    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(self, status: int = 200, body: bytes | str = b"",
                 content_type: str = "text/plain; charset=utf-8",
                 headers: list[tuple[str, str]] | None = None) -> None:
        self.status, self.content_type, self.headers = status, content_type, headers or []
        self.body = body.encode() if isinstance(body, str) else body


class Deferred:
    """Returned by a handler whose answer needs blocking work (run on a thread)."""
    __slots__ = ("work",)

    def __init__(self, work: Callable[[], Response]) -> None:
        self.work = work


if TYPE_CHECKING:
    Handler = Callable[[Request], Response | Deferred]


def listen_host() -> str:
    """Where the programs listen: every address of the pod (KNET_LISTEN_HOST overrides)."""
    return os.environ.get("KNET_LISTEN_HOST", "0.0.0.0")


def fixed_port(port: int) -> int:
    """The port a program whose real image has a fixed one listens on: `port`, or env
    KNET_PORT (a knet extension, for tests that run it on the host)."""
    return int(os.environ.get("KNET_PORT") or port)


def _listen(kind: int, port: int, host: str | None) -> _socket.socket:
    sock = _socket.socket(_socket.AF_INET, kind)
    sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
    sock.bind((host or listen_host(), port))
    if kind == _socket.SOCK_STREAM:
        sock.listen(1024)
    sock.setblocking(False)
    return sock


_date = [0, ""]  # (second, "Date: ...") cached: one strftime per second, not per request


def _date_header() -> str:
    now = int(time.time())
    if now != _date[0]:
        _date[:] = [now, time.strftime("Date: %a, %d %b %Y %H:%M:%S GMT", time.gmtime(now))]
    return str(_date[1])


class _Conn:
    def __init__(self, server: HttpServer, sock: _socket.socket, peer: tuple[str, int]) -> None:
        self.server, self.sock, self.peer = server, sock, peer[:2]
        self.local = sock.getsockname()[:2]
        self.fd = sock.fileno()
        self.buf = self.out = b""
        self.busy = self.closing = False
        server.loop.watch(self.fd, self.on_read)

    def on_read(self) -> None:
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        self.buf += data
        self.process()

    def process(self) -> None:
        while not self.busy and not self.closing and self.fd >= 0:
            req = self.parse()
            if req is None:
                return
            result = self.server.handler(req)
            if isinstance(result, Deferred):
                self.busy = True
                self.server.loop.spawn(result.work, self._when_done(req))
                return
            self.respond(req, result)

    def _when_done(self, req: Request) -> Callable[[object], None]:
        return lambda result: self._done(req, result)

    def _done(self, req: Request, result: object) -> None:
        self.busy = False
        if not isinstance(result, Response):
            result = Response(500, f"{result}\n")
        self.respond(req, result)
        self.process()

    def parse(self) -> Request | None:
        # Not the proxy's strict llhttp parser (knet/proxy/http1.py): an image is an end
        # server that forwards nothing, so leniency cannot smuggle; and importing httptools
        # would cost every container start (see _loop.py). The proxy in front is strict.
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > MAX_HEAD:
                self.fail(431)
            return None
        lines = self.buf[:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            self.fail(400)
            return None
        headers = [(k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in lines[1:])]
        length = next((v for k, v in headers if k.lower() == "content-length"), "0")
        size = int(length) if length.isdigit() else 0
        if size > MAX_BODY:
            self.fail(413)
            return None
        if len(self.buf) < end + 4 + size:
            return None
        body, self.buf = self.buf[end + 4:end + 4 + size], self.buf[end + 4 + size:]
        return Request(parts[0], parts[1], parts[2], headers, body, self.peer, self.local)

    def fail(self, status: int) -> None:
        req = Request("GET", "/", "HTTP/1.0", [], b"", self.peer, self.local)
        self.respond(req, Response(status, f"{REASONS.get(status, '')}\n"), close=True)

    def respond(self, req: Request, resp: Response, *, close: bool = False) -> None:
        conn = req.header("connection").lower()
        close = close or conn == "close" or (req.version == "HTTP/1.0" and conn != "keep-alive")
        head = [f"HTTP/1.1 {resp.status} {REASONS.get(resp.status, 'Unknown')}",
                f"Server: {self.server.name}",
                _date_header(),
                f"Content-Type: {resp.content_type}", f"Content-Length: {len(resp.body)}",
                "Connection: close" if close else "Connection: keep-alive"]
        head += [f"{k}: {v}" for k, v in resp.headers]
        payload = "\r\n".join(head).encode("latin-1") + b"\r\n\r\n"
        self.send(payload if req.method == "HEAD" else payload + resp.body)
        if close:
            self.closing = True
            if not self.out:
                self.close()

    def send(self, data: bytes) -> None:
        if self.fd < 0:
            return
        if not self.out:
            try:
                data = data[self.sock.send(data):]
            except BlockingIOError:
                pass
            except OSError:
                self.close()
                return
        self.out += data
        if self.out:
            self.server.loop.watch(self.fd, self.on_read, self.on_write)

    def on_write(self) -> None:
        try:
            self.out = self.out[self.sock.send(self.out):]
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        if not self.out:
            self.server.loop.watch(self.fd, self.on_read)
            if self.closing:
                self.close()

    def close(self) -> None:
        if self.fd >= 0:
            self.server.loop.unwatch(self.fd)
            self.sock.close()
            self.fd = -1


class HttpServer:
    def __init__(self, loop: Loop, handler: Handler, port: int, *, host: str | None = None,
                 name: str = "knet") -> None:
        self.loop, self.handler, self.name = loop, handler, name
        self.sock = _listen(_socket.SOCK_STREAM, port, host)
        loop.watch(self.sock.fileno(), self.on_accept)

    def on_accept(self) -> None:
        for _ in range(64):
            try:
                fd, peer = self.sock._accept()  # type: ignore[attr-defined]
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            conn = _socket.socket(self.sock.family, _socket.SOCK_STREAM, 0, fd)
            conn.setblocking(False)
            _Conn(self, conn, peer)

    def close(self) -> None:
        self.loop.unwatch(self.sock.fileno())
        self.sock.close()


def serve_udp(loop: Loop, port: int, answer: Callable[[bytes, tuple[str, int]], bytes | None],
              *, host: str | None = None) -> _socket.socket:
    """Each datagram gets `answer(data, addr)` back (None: no reply)."""
    sock = _listen(_socket.SOCK_DGRAM, port, host)

    def on_read() -> None:
        for _ in range(64):
            try:
                data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            out = answer(data, addr)
            if out is not None:
                try:
                    sock.sendto(out, addr)
                except OSError:
                    pass
    loop.watch(sock.fileno(), on_read)
    return sock


def serve_greeting(loop: Loop, port: int, payload: Callable[[], bytes], *,
                   host: str | None = None) -> _socket.socket:
    """Raw TCP: write `payload()` to each connection and close it."""
    sock = _listen(_socket.SOCK_STREAM, port, host)

    def on_accept() -> None:
        for _ in range(64):
            try:
                fd, _ = sock._accept()  # type: ignore[attr-defined]
            except OSError:
                return
            conn = _socket.socket(sock.family, _socket.SOCK_STREAM, 0, fd)
            try:
                conn.send(payload())
            except OSError:
                pass
            conn.close()
    loop.watch(sock.fileno(), on_accept)
    return sock


def run(setup: Callable[[Loop], None], *, name: str) -> int:
    """Builds the loop, lets `setup` open the program's sockets, serves until SIGTERM or
    SIGINT, and returns 0 (1 with a one-line message if a socket cannot be opened)."""
    loop = Loop()
    loop.handle_signals()
    try:
        setup(loop)
    except OSError as exc:
        sys.stderr.write(f"{name}: {exc.strerror or exc}\n")
        return 1
    except ValueError as exc:  # a flag the program refuses, with its reason
        sys.stderr.write(f"{name}: {exc}\n")
        return 1
    loop.run()
    return 0


def serve_fixed(handler: Handler, port: int, *, name: str, server: str = "") -> int:
    """`run` for a program with one HTTP server on its image's fixed port (KNET_PORT
    overrides it, see `fixed_port`)."""
    def setup(loop: Loop) -> None:
        HttpServer(loop, handler, fixed_port(port), name=server or name)
        sys.stderr.write(f"{name}: listening on :{fixed_port(port)}\n")
    return run(setup, name=name)


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
            values[name] = (int(value) if isinstance(default, int) else
                            float(value) if isinstance(default, float) else value)
        except ValueError:
            raise UsageError(f'invalid value "{value}" for flag -{name}') from None
    return values, rest
