"""`registry.k8s.io/e2e-test-images/agnhost`: the subcommands Kubernetes tutorials and e2e
tests use, with agnhost's flags and answers.

- `netexec [--http-port 8080] [--udp-port 8081] [--delay-shutdown S]`: HTTP `/` (NOW: time),
  `/hostname`, `/clientip` (ip:port), `/echo?msg=`, `/dial?request=&host=&port=&protocol=
  http|udp&tries=` (JSON {"responses","errors"}), `/shell?cmd=` (JSON {"output"}),
  `/exit?code=`, `/healthz`, `/readyz`, `/shutdown`; UDP commands `hostname`, `echo X`,
  `clientip`.
- `serve-hostname [--port 9376] [--http] [--tcp] [--udp] [--close]`: the hostname over HTTP
  (default), raw TCP and/or UDP.
- `pause`: sleep until SIGTERM.

/dial and /shell block on a thread (`Deferred`), never the loop.
"""

from __future__ import annotations

import os
import sys
import time

from knet.runtime.images._http import (
    Deferred,
    HttpServer,
    Request,
    Response,
    UsageError,
    goflags,
    run,
    serve_greeting,
    serve_udp,
)
from knet.runtime.images._loop import Loop

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    Setup = Callable[[dict[str, object], Loop], None]

DIAL_TIMEOUT = 3.0
SHELL_TIMEOUT = 30.0


def _hostname() -> str:
    return os.uname().nodename


def _json(status: int, body: object) -> Response:
    import json
    return Response(status, json.dumps(body) + "\n", "application/json")


def udp_command(data: bytes, addr: tuple[str, int]) -> bytes | None:
    """netexec's UDP side: one command per datagram; anything else gets no answer."""
    text = data.decode("utf-8", "replace").strip()
    cmd, _, rest = text.partition(" ")
    if cmd == "hostname":
        return _hostname().encode()
    if cmd == "echo":
        return rest.encode()
    if cmd == "clientip":
        return f"{addr[0]}:{addr[1]}".encode()
    sys.stderr.write(f"netexec: unknown UDP command {text[:40]!r} from {addr[0]}\n")
    return None


def _dial_http(host: str, port: int, request: str) -> str:
    import socket
    with socket.create_connection((host, port), timeout=DIAL_TIMEOUT) as s:
        s.sendall(f"GET /{request.lstrip('/')} HTTP/1.0\r\nHost: {host}:{port}\r\n"
                  "User-Agent: agnhost-netexec\r\n\r\n".encode())
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1:2]
    if status != [b"200"]:
        raise OSError(f"status {status[0].decode() if status else 'none'}")
    return body.decode("utf-8", "replace").strip()


def _dial_udp(host: str, port: int, request: str) -> str:
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(DIAL_TIMEOUT)
        s.connect((host, port))
        s.send(request.encode())
        return s.recv(65535).decode("utf-8", "replace").strip()


def dial(req: Request) -> Response:
    proto, host, request = req.arg("protocol", "http"), req.arg("host"), req.arg("request")
    try:
        port, tries = int(req.arg("port")), int(req.arg("tries", "1"))
    except ValueError:
        return Response(400, "port and tries must be numbers\n")
    if proto not in ("http", "udp") or not host:
        return Response(400, f"unsupported protocol {proto!r} or missing host\n")
    fn = _dial_http if proto == "http" else _dial_udp
    responses, errors = [], []
    for _ in range(max(1, tries)):
        try:
            responses.append(fn(host, port, request))
        except OSError as exc:
            errors.append(f"{proto} {host}:{port}: {exc or type(exc).__name__}")
    return _json(200, {"responses": responses, "errors": errors})


def shell(req: Request) -> Response:
    import subprocess
    try:
        res = subprocess.run(["/bin/sh", "-c", req.arg("cmd")], check=False, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             timeout=SHELL_TIMEOUT)
    except subprocess.TimeoutExpired:
        return _json(417, {"error": "timed out"})
    body = {"output": res.stdout.decode("utf-8", "replace")}
    if res.returncode:
        return _json(417, {**body, "error": f"exit status {res.returncode}"})
    return _json(200, body)


class NetExec:
    def __init__(self, loop: Loop, delay: float) -> None:
        self.loop, self.delay, self.stopping = loop, delay, False
        loop.on_signal = self.shutdown

    def shutdown(self) -> None:
        """Not ready (503 on /healthz, /readyz) at once; stop after --delay-shutdown."""
        self.stopping = True
        self.loop.call_later(self.delay, self.loop.stop)

    def handle(self, req: Request) -> Response | Deferred:
        p = req.path
        if p == "/":
            return Response(200, f"NOW: {time.strftime('%Y-%m-%d %H:%M:%S %z')}")
        if p in ("/hostname", "/hostName"):
            return Response(200, _hostname())
        if p == "/clientip":
            return Response(200, f"{req.client[0]}:{req.client[1]}")
        if p == "/echo":
            return Response(200, req.arg("msg"))
        if p in ("/healthz", "/readyz"):
            return Response(503, "shutting down") if self.stopping else Response(200, "ok")
        if p == "/exit":
            code = int(req.arg("code", "0") or 0)
            self.loop.call_later(0.05, lambda: os._exit(code))
            return Response(200, f"exiting with {code}")
        if p == "/shutdown":
            self.shutdown()
            return Response(200, "shutting down")
        if p == "/dial":
            return Deferred(lambda: dial(req))
        if p == "/shell":
            return Deferred(lambda: shell(req))
        return Response(404, "404 page not found\n")


def _netexec(flags: dict[str, object], loop: Loop) -> None:
    app = NetExec(loop, float(str(flags["delay-shutdown"])))
    HttpServer(loop, app.handle, int(str(flags["http-port"])), name="agnhost")
    if int(str(flags["udp-port"])) > 0:
        serve_udp(loop, int(str(flags["udp-port"])), udp_command)
    sys.stderr.write(f"netexec: http :{flags['http-port']} udp :{flags['udp-port']}\n")


def _serve_hostname(flags: dict[str, object], loop: Loop) -> None:
    port = int(str(flags["port"]))
    if flags["tcp"]:
        serve_greeting(loop, port, lambda: _hostname().encode())
    elif flags["http"]:
        close = [("Connection", "close")] if flags["close"] else []
        HttpServer(loop, lambda r: Response(200, _hostname(), headers=close), port,
                   name="serve-hostname")
    if flags["udp"]:
        serve_udp(loop, port, lambda data, addr: _hostname().encode())
    sys.stderr.write(f"serve-hostname: serving {_hostname()} on :{port}\n")


NETEXEC: dict[str, object] = {"http-port": 8080, "udp-port": 8081, "sctp-port": -1, "delay-shutdown": 0,
           "http-override": "", "udp-listen-addresses": "", "certFile": "", "privKeyFile": ""}
SERVE_HOSTNAME: dict[str, object] = {"port": 9376, "http": True, "tcp": False, "udp": False, "close": False,
                  "exit-on-failure": False}


def main(argv: list[str]) -> int:
    sub, args = (argv[0], argv[1:]) if argv else ("pause", [])
    if sub == "pause":
        from knet.runtime.images import pause
        return pause.main(args)
    specs: dict[str, tuple[dict[str, object], Setup]] = {"netexec": (NETEXEC, _netexec), "serve-hostname": (SERVE_HOSTNAME, _serve_hostname)}
    if sub not in specs:
        sys.stderr.write(f"agnhost: unknown command {sub!r}; knet's agnhost has: "
                         "netexec, serve-hostname, pause\n")
        return 1
    spec, fn = specs[sub]
    try:
        flags, _ = goflags(args, dict(spec))
    except UsageError as exc:
        sys.stderr.write(f"agnhost {sub}: {exc}\n")
        return 2
    return run(lambda loop: fn(flags, loop), name=f"agnhost {sub}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
