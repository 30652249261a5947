"""`registry.k8s.io/e2e-test-images/agnhost`: the subcommands Kubernetes tutorials and the
upstream network e2e tests use, with agnhost's flags, answers and exit codes.

- `netexec`: see netexec.py.
- `serve-hostname [--port 9376] [--http] [--tcp] [--udp] [--close]`: the hostname over HTTP
  (default), raw TCP and/or UDP (also the old `registry.k8s.io/serve_hostname` image).
- `liveness`: HTTP :8080, `/healthz` 200 `ok` for 10 s after start, then 500 `error: SECONDS`
  (the Configure Probes tutorial; also `registry.k8s.io/liveness`'s `/server`); `/started`,
  `/redirect?loc=`.
- `porter`, `connect`: see agnhost_net.py.
- `test-webserver [--port 80]`: files of the container's filesystem over HTTP.
- `pause [--delay-shutdown S]`: prints `Paused`, waits for SIGTERM (exit 2) or SIGINT (exit 1).
- `dns-suffix`, `dns-server-list`, `etc-hosts`: the pod's resolv.conf search list,
  nameservers, and /etc/hosts.
"""

from __future__ import annotations

import os
import sys
import time

from knet.runtime.images._http import (
    HttpServer,
    Request,
    Response,
    UsageError,
    fixed_port,
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

COMMANDS = ("netexec", "serve-hostname", "liveness", "porter", "connect", "test-webserver",
            "pause", "dns-suffix", "dns-server-list", "etc-hosts")


def _hostname() -> str:
    return os.uname().nodename


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
    sys.stderr.write(f"Serving on port {port}.\n")


def _liveness(flags: dict[str, object], loop: Loop) -> None:
    started = time.monotonic()

    def handle(req: Request) -> Response:
        age = time.monotonic() - started
        if req.path == "/healthz":
            if age > 10:
                return Response(500, f"error: {age:.6f}".rstrip("0"))
            return Response(200, "ok")
        if req.path == "/started":
            return Response(200, f"{age:.6f}s")
        if req.path == "/redirect":
            loc = req.arg("loc")
            return Response(302, f'<a href="{loc}">Found</a>.\n\n', "text/html; charset=utf-8",
                            [("Location", loc)])
        return Response(404, "404 page not found\n")
    HttpServer(loop, handle, fixed_port(8080), name="liveness")


def _test_webserver(flags: dict[str, object], loop: Loop) -> None:
    def handle(req: Request) -> Response:
        path = os.path.normpath("/" + req.path.lstrip("/"))
        if os.path.isdir(path):
            names = sorted(n + ("/" if os.path.isdir(os.path.join(path, n)) else "")
                           for n in os.listdir(path))
            body = "".join(f'<a href="{n}">{n}</a>\n' for n in names)
            return Response(200, f"<pre>\n{body}</pre>\n", "text/html; charset=utf-8")
        try:
            with open(path, "rb") as f:
                return Response(200, f.read())
        except FileNotFoundError:
            return Response(404, "404 page not found\n")
        except OSError:
            return Response(500, "500 Internal Server Error\n")
    HttpServer(loop, handle, int(str(flags["port"])), name="test-webserver")


def _resolv(key: str) -> str:
    with open("/etc/resolv.conf") as f:
        for line in f:
            if line.startswith(key):
                return ",".join(line.split()[1:])
    raise SystemExit(f"Could not find DNS {key} list!")


def _pause(args: list[str]) -> int:
    import _signal as signal  # type: ignore[import-not-found]
    flags, _ = goflags(args, {"delay-shutdown": 0})
    got: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: got.append(2))
    signal.signal(signal.SIGINT, lambda *_: got.append(1))
    print("Paused", flush=True)
    while not got:
        signal.pause()
    delay = int(str(flags["delay-shutdown"]))
    if delay > 0:
        print(f"Sleeping {delay} seconds before exit ...", end="", flush=True)
        time.sleep(delay)
    print(f"exiting {got[0]}", flush=True)
    return got[0]


SERVERS: dict[str, dict[str, object]] = {
    "serve-hostname": {"port": 9376, "http": True, "tcp": False, "udp": False, "close": False,
                       "exit-on-failure": False},
    "liveness": {}, "test-webserver": {"port": 80}}


def _server(sub: str) -> tuple[dict[str, object], Setup]:
    if sub == "netexec":
        from knet.runtime.images import netexec
        return netexec.FLAGS, netexec.start
    fns: dict[str, Setup] = {"serve-hostname": _serve_hostname, "liveness": _liveness,
                             "test-webserver": _test_webserver}
    return SERVERS[sub], fns[sub]


def main(argv: list[str]) -> int:
    sub, args = (argv[0], argv[1:]) if argv else ("pause", [])
    if sub not in COMMANDS:
        sys.stderr.write(f"agnhost: unknown command {sub!r}; knet's agnhost has: "
                         f"{', '.join(COMMANDS)}\n")
        return 1
    try:
        if sub == "pause":
            return _pause(args)
        if sub in ("porter", "connect"):
            from knet.runtime.images import agnhost_net
            return agnhost_net.main(sub, args)
        if sub in ("dns-suffix", "dns-server-list", "etc-hosts"):
            if sub == "etc-hosts":
                with open("/etc/hosts") as f:
                    sys.stdout.write(f.read())
            else:
                print(_resolv("search" if sub == "dns-suffix" else "nameserver"))
            return 0
        spec, setup = _server(sub)
        flags, _ = goflags(args, dict(spec))
    except UsageError as exc:
        sys.stderr.write(f"agnhost {sub}: {exc}\n")
        return 2
    return run(lambda loop: setup(flags, loop), name=f"agnhost {sub}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
