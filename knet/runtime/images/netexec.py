"""`agnhost netexec`: agnhost's network test server, endpoint by endpoint as upstream's
netexec.go answers them (bodies without a trailing newline, JSON keys sorted, status 200 for
/dial and /shell whatever happened, as the Go code does).

HTTP on --http-port (8080): `/` (NOW: time), `/clientip`, `/header[?key=]`, `/echo?msg=&code=`,
`/hostname`, `/hostName`, `/healthz` (200 once the UDP server runs, else 412), `/readyz` (503
after SIGTERM), `/dial?host=&port=&request=&protocol=http|udp&tries=`, `/shell?cmd=`,
`/redirect?location=&code=`, `/upload` (multipart `file` to /uploads), `/exit?code=&wait=&timeout=`,
`/shutdown`; UDP on --udp-port (8081, -1 off): `hostname`, `echo MSG`, `clientip`. SIGTERM exits
0 after --delay-shutdown seconds. SCTP and TLS are refused at start with a clear message (knet's
pod network carries neither). Blocking work (/dial, /shell, /exit's wait) runs on a thread.
"""

from __future__ import annotations

import os
import sys
import time

from knet.runtime.images._http import Deferred, HttpServer, Request, Response, serve_udp
from knet.runtime.images._loop import Loop

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

DIAL_TIMEOUT = 5.0
FLAGS: dict[str, object] = {"http-port": 8080, "udp-port": 8081, "sctp-port": -1,
                            "delay-shutdown": 0, "http-override": "", "udp-listen-addresses": "",
                            "tls-cert-file": "", "tls-private-key-file": ""}


def hostname() -> str:
    return os.uname().nodename


def _text(status: int, body: str | bytes = b"", headers: list[tuple[str, str]] | None = None,
          ) -> Response:
    return Response(status, body, "text/plain; charset=utf-8", headers)


def _go_json(obj: object) -> str:
    import json
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def go_duration(text: str) -> float:
    """Go's time.ParseDuration for the units tests use (`1s`, `500ms`, `1m30s`, `0`)."""
    if text in ("0", ""):
        return 0.0
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    total, num, i = 0.0, "", 0
    while i < len(text):
        if text[i].isdigit() or text[i] == ".":
            num += text[i]
            i += 1
            continue
        unit = next((u for u in ("ns", "us", "µs", "ms", "s", "m", "h") if text.startswith(u, i)
                     and not (u == "m" and text.startswith("ms", i))), None)
        if not num or unit is None:
            raise ValueError(f'time: invalid duration "{text}"')
        total, num, i = total + float(num) * units[unit], "", i + len(unit)
    if num:
        raise ValueError(f'time: missing unit in duration "{text}"')
    return total


def udp_command(data: bytes, addr: tuple[str, int]) -> bytes | None:
    """netexec's UDP side: one command per datagram (trimmed, lower-cased as upstream)."""
    text = data.decode("utf-8", "replace").strip().lower()
    if text == "hostname":
        return hostname().encode()
    if text.startswith("echo "):
        return text[5:].encode()
    if text == "clientip":
        return f"{addr[0]}:{addr[1]}".encode()
    if text:
        sys.stderr.write(f"Unknown UDP command received from {addr[0]}:{addr[1]}: {text[:60]}\n")
    return None


def _errno_text(exc: OSError) -> str:
    import errno
    names = {errno.ECONNREFUSED: "connection refused", errno.EHOSTUNREACH: "no route to host",
             errno.ENETUNREACH: "network is unreachable", errno.ECONNRESET: "connection reset by peer"}
    return names.get(exc.errno or 0, exc.strerror or str(exc))


def dial_http(host: str, port: int, request: str) -> str:
    import socket
    url = f"http://{host}:{port}/{request}"
    try:
        s = socket.create_connection((host, port), timeout=DIAL_TIMEOUT)
    except TimeoutError:
        raise OSError(f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while '
                      "awaiting headers)") from None
    except OSError as exc:
        raise OSError(f'Get "{url}": dial tcp {host}:{port}: connect: {_errno_text(exc)}') from None
    with s:
        s.sendall(f"GET /{request} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: Go-http-client/1.1"
                  "\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            raise OSError(f'Get "{url}": context deadline exceeded (Client.Timeout exceeded '
                          "while awaiting headers)") from None
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/"):
        raise OSError(f'Get "{url}": EOF')
    if b"transfer-encoding: chunked" in head.lower():
        body = _unchunk(body)
    return body.decode("utf-8", "replace")


def _unchunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2:]
    return bytes(out)


def dial_udp(host: str, port: int, request: str) -> str:
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(DIAL_TIMEOUT)
        s.connect((host, port))
        local = "{}:{}".format(*s.getsockname()[:2])
        try:
            s.send(request.encode())
            data = s.recv(2048)
        except TimeoutError:
            raise OSError(f"reading from udp connection failed. err:'read udp {local}->"
                          f"{host}:{port}: i/o timeout'") from None
        except OSError as exc:
            raise OSError(f"reading from udp connection failed. err:'read udp {local}->"
                          f"{host}:{port}: recvfrom: {_errno_text(exc)}'") from None
    return data.decode("utf-8", "replace")


def dial(req: Request) -> Response:
    host, port, request = req.arg("host"), req.arg("port"), req.arg("request")
    proto, tries_arg = req.arg("protocol").lower(), req.arg("tries")
    try:
        tries = int(tries_arg) if tries_arg else 1
    except ValueError:
        return _text(400, f'tries parameter is invalid. strconv.Atoi: parsing "{tries_arg}": '
                          "invalid syntax\n")
    if not request:
        return _text(400, "request parameter not specified. <nil>\n")
    if proto == "sctp":
        return _text(400, "unsupported protocol. sctp (knet's pod network carries no SCTP)\n")
    if proto not in ("", "http", "udp"):
        return _text(400, f"unsupported protocol. {proto}\n")
    import socket
    try:
        addr = socket.getaddrinfo(host or "0.0.0.0", int(port), socket.AF_INET)[0][4][0]
    except (ValueError, OSError) as exc:
        return _text(400, f"host and/or port param are invalid. {exc}\n")
    fn: Callable[[str, int, str], str] = dial_udp if proto == "udp" else dial_http
    responses, errors, last = [], [], ""
    for _ in range(tries):
        try:
            last = fn(str(addr), int(port), request)
            responses.append(last)
        except OSError as exc:
            last = ""
            errors.append(str(exc))
    out: dict[str, list[str]] = {}
    if last:
        out["responses"] = responses
    if errors:
        out["errors"] = errors
    return _text(200, _go_json(out))


def shell(req: Request) -> Response:
    import subprocess
    cmd = req.arg("shellCommand") or req.arg("cmd")
    res = subprocess.run(["/bin/sh", "-c", cmd], check=False, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    out: dict[str, str] = {}
    if res.stdout:
        out["output"] = res.stdout.decode("utf-8", "replace")
    if res.returncode:
        out["error"] = (f"exit status {res.returncode}" if res.returncode > 0 else
                        f"signal: {-res.returncode}")
    return _text(200, _go_json(out))


def upload(req: Request, directory: str = "/uploads") -> Response:
    """The multipart form's `file` part, written to a new file under /uploads (mode 0700)."""
    ctype = req.header("content-type")
    boundary = ctype.partition("boundary=")[2].strip('"')
    data = None
    if ctype.startswith("multipart/form-data") and boundary:
        for part in req.body.split(b"--" + boundary.encode()):
            head, _, content = part.partition(b"\r\n\r\n")
            if b'name="file"' in head:
                data = content[:-2] if content.endswith(b"\r\n") else content
    if data is None:
        return _text(200, _go_json({"error": "Unable to upload file."}))
    import tempfile
    try:
        os.makedirs(directory, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix="upload", dir=directory)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(path, 0o700)
    except OSError:
        return _text(200, _go_json({"error": "Unable to open file for write"}))
    return _text(201, _go_json({"output": path}))


def redirect(req: Request) -> Response:
    location, code = req.arg("location"), req.arg("code")
    try:
        status = int(code) if code else 302
    except ValueError:
        return _text(200, f'argument \'code\' must be an integer or empty, got "{code}"\n')
    from html import escape
    body = (f'<a href="{escape(location)}">{_reason(status)}</a>.\n\n'
            if req.method in ("GET", "HEAD") else "")
    return Response(status, body, "text/html; charset=utf-8", [("Location", location)])


def _reason(status: int) -> str:
    return {301: "Moved Permanently", 302: "Found", 303: "See Other", 307: "Temporary Redirect",
            308: "Permanent Redirect"}.get(status, "")


def header(req: Request) -> Response:
    key = req.arg("key")
    if key:
        return _text(200, req.header(key))
    merged: dict[str, list[str]] = {}
    for k, v in req.headers:
        if k.lower() != "host":  # Go moves Host out of the header map
            merged.setdefault("-".join(w.capitalize() for w in k.split("-")), []).append(v)
    return _text(200, _go_json(merged))


def _go_now() -> str:
    now = time.time()
    frac = f"{now % 1:.9f}"[2:]
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + "." + frac.rstrip("0") + \
        time.strftime(" %z %Z", time.localtime(now))


class NetExec:
    def __init__(self, loop: Loop, flags: dict[str, object]) -> None:
        self.loop, self.flags = loop, flags
        self.delay = float(str(flags["delay-shutdown"]))
        self.udp_ready = False
        self.terminating = False
        self.override = str(flags["http-override"])
        loop.on_signal = self.on_sigterm

    def on_sigterm(self) -> None:
        """/readyz answers 503 at once; the process exits 0 after --delay-shutdown."""
        if self.terminating:
            return
        self.terminating = True
        if self.delay > 0:
            sys.stderr.write(f"Sleeping {int(self.delay)} seconds before terminating...\n")
        self.loop.call_later(self.delay, self.loop.stop)

    def exit_later(self, code: int, delay: float = 0.05) -> None:
        self.loop.call_later(delay, lambda: os._exit(code))

    def handle(self, req: Request) -> Response | Deferred:
        if self.override:
            req = Request("GET", self.override, req.version, req.headers, b"", req.client,
                          req.local)
        p = req.path
        simple = {"/": lambda: _text(200, f"NOW: {_go_now()}"),
                  "/clientip": lambda: _text(200, f"{req.client[0]}:{req.client[1]}"),
                  "/hostname": lambda: _text(200, hostname()),
                  "/hostName": lambda: _text(200, hostname()),
                  "/header": lambda: header(req), "/redirect": lambda: redirect(req),
                  "/upload": lambda: upload(req), "/echo": lambda: self.echo(req),
                  "/healthz": lambda: _text(200 if self.udp_ready else 412),
                  "/readyz": self.readyz}
        if p in simple:
            return simple[p]()
        if p == "/dial":
            return Deferred(lambda: dial(req))
        if p == "/shell":
            return Deferred(lambda: shell(req))
        if p == "/exit":
            return self.exit(req)
        if p == "/shutdown":
            os._exit(0)
        return _text(404, "404 page not found\n")

    def readyz(self) -> Response:
        if self.terminating:
            return _text(503, "shutting down")
        return _text(200, "ok") if self.udp_ready else _text(412)

    @staticmethod
    def echo(req: Request) -> Response:
        code = req.arg("code")
        try:
            status = int(code) if code else 200
        except ValueError:
            return _text(200, f'argument \'code\' must be an integer or empty, got "{code}"\n')
        return _text(status, req.arg("msg"))

    def exit(self, req: Request) -> Response | Deferred:
        """Exit with `code` after `wait`; with no `timeout` at once (no answer, as upstream's
        os.Exit in the handler), else after answering (a graceful shutdown)."""
        values = {k: req.arg(k) for k in ("code", "wait", "timeout")}
        try:
            wait, timeout = go_duration(values["wait"]), go_duration(values["timeout"])
        except ValueError:
            bad = "timeout" if not _ok_duration(values["timeout"]) else "wait"
            return _text(200, f"argument '{bad}' must be a valid golang duration or empty, "
                              f'got "{values[bad]}"\n')
        try:
            code = int(values["code"] or 0)
        except ValueError:
            return _text(200, "argument 'code' must be an integer [0-127] or empty, got "
                              f'"{values["code"]}"\n')
        sys.stderr.write(f"Will begin shutdown in {wait}s, allowing {timeout}s for connections "
                         f"to close, then will exit with {code}\n")

        def work() -> Response:
            time.sleep(wait)
            if timeout == 0:
                os._exit(code)
            self.loop.post(lambda: self.exit_later(code, 0.1))
            return _text(200)
        return Deferred(work)


def _ok_duration(text: str) -> bool:
    try:
        go_duration(text)
    except ValueError:
        return False
    return True


def start(flags: dict[str, object], loop: Loop) -> None:
    """Opens netexec's sockets (raises OSError or ValueError with a message on bad flags)."""
    if int(str(flags["sctp-port"])) != -1:
        raise ValueError("--sctp-port: knet's pod network carries no SCTP; drop the flag "
                         "(TCP and UDP work)")
    if flags["tls-cert-file"]:
        raise ValueError("--tls-cert-file: knet's netexec serves plain HTTP only; drop the flag")
    app = NetExec(loop, flags)
    HttpServer(loop, app.handle, int(str(flags["http-port"])), name="agnhost")
    udp_port = int(str(flags["udp-port"]))
    if udp_port != -1:
        hosts = [h.strip() for h in str(flags["udp-listen-addresses"]).split(",") if h.strip()]
        for host in hosts or [""]:
            serve_udp(loop, udp_port, udp_command, host=host or None)
        app.udp_ready = True
        sys.stderr.write(f"Started UDP server on port {udp_port}\n")
    sys.stderr.write(f"Started HTTP server on port {flags['http-port']}\n")
