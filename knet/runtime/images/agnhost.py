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
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time

from knet.runtime.images._http import (Request, Response, UsageError, goflags, listen_host, run,
                                       serve_http)

DIAL_TIMEOUT = 3.0
SHELL_TIMEOUT = 30.0


def _hostname() -> str:
    return socket.gethostname()


class _UdpCommands(asyncio.DatagramProtocol):
    """netexec's UDP side: one command per datagram; anything else gets no answer."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        text = data.decode("utf-8", "replace").strip()
        cmd, _, rest = text.partition(" ")
        if cmd == "hostname":
            out = _hostname()
        elif cmd == "echo":
            out = rest
        elif cmd == "clientip":
            out = f"{addr[0]}:{addr[1]}"
        else:
            sys.stderr.write(f"netexec: unknown UDP command {text[:40]!r} from {addr[0]}\n")
            return
        self.transport.sendto(out.encode(), addr)


class _Hostname(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(_hostname().encode(), addr)


async def _dial_http(host: str, port: int, request: str) -> str:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET /{request.lstrip('/')} HTTP/1.0\r\nHost: {host}:{port}\r\n"
                     "User-Agent: agnhost-netexec\r\n\r\n".encode())
        raw = await reader.read(-1)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1:2]
    if status != [b"200"]:
        raise OSError(f"status {status[0].decode() if status else '?'}")
    return body.decode("utf-8", "replace").strip()


async def _dial_udp(host: str, port: int, request: str) -> str:
    loop = asyncio.get_running_loop()
    got: asyncio.Future[bytes] = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            if not got.done():
                got.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=(host, port))
    try:
        transport.sendto(request.encode())
        return (await got).decode("utf-8", "replace").strip()
    finally:
        transport.close()


async def dial(req: Request) -> Response:
    proto = req.arg("protocol", "http")
    host, request = req.arg("host"), req.arg("request")
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
            responses.append(await asyncio.wait_for(fn(host, port, request), DIAL_TIMEOUT))
        except (OSError, asyncio.TimeoutError, IndexError) as exc:
            errors.append(f"{proto} {host}:{port}: {exc or type(exc).__name__}")
    body = {"responses": responses, "errors": errors}
    return Response(200, json.dumps(body) + "\n", "application/json")


async def shell(req: Request) -> Response:
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", req.arg("cmd"), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), SHELL_TIMEOUT)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        return Response(417, json.dumps({"error": "timed out"}) + "\n", "application/json")
    body: dict[str, str] = {"output": out.decode("utf-8", "replace")}
    if proc.returncode:
        body["error"] = f"exit status {proc.returncode}"
        return Response(417, json.dumps(body) + "\n", "application/json")
    return Response(200, json.dumps(body) + "\n", "application/json")


class NetExec:
    def __init__(self, stop: asyncio.Event) -> None:
        self.stop, self.stopping = stop, False

    def handle(self, req: Request) -> Response | asyncio.Future[Response]:
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
            return Response(503 if self.stopping else 200, "shutting down" if self.stopping
                            else "ok")
        if p == "/exit":
            code = int(req.arg("code", "0") or 0)
            asyncio.get_running_loop().call_later(0.05, os._exit, code)
            return Response(200, f"exiting with {code}")
        if p == "/shutdown":
            self.stop.set()
            return Response(200, "shutting down")
        if p == "/dial":
            return asyncio.ensure_future(dial(req))
        if p == "/shell":
            return asyncio.ensure_future(shell(req))
        return Response(404, "404 page not found\n")


async def _netexec(flags: dict[str, object], stop: asyncio.Event) -> None:
    app = NetExec(stop)
    loop = asyncio.get_running_loop()
    http = await serve_http(app.handle, int(str(flags["http-port"])), server_name="agnhost")
    udp = None
    if int(str(flags["udp-port"])) > 0:
        udp, _ = await loop.create_datagram_endpoint(
            _UdpCommands, local_addr=(listen_host(), int(str(flags["udp-port"]))))
    sys.stderr.write(f"netexec: http :{flags['http-port']} udp :{flags['udp-port']}\n")
    await stop.wait()
    app.stopping = True
    await asyncio.sleep(float(str(flags["delay-shutdown"])))
    http.close()
    if udp is not None:
        udp.close()


async def _tcp_hostname(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(_hostname().encode())
    await writer.drain()
    writer.close()


async def _serve_hostname(flags: dict[str, object], stop: asyncio.Event) -> None:
    port, loop = int(str(flags["port"])), asyncio.get_running_loop()
    closers = []
    if flags["tcp"]:
        closers.append(await asyncio.start_server(_tcp_hostname, listen_host(), port,
                                                  reuse_address=True))
    elif flags["http"]:
        close = [("Connection", "close")] if flags["close"] else []
        closers.append(await serve_http(lambda r: Response(200, _hostname(), headers=close),
                                        port, server_name="serve-hostname"))
    if flags["udp"]:
        closers.append((await loop.create_datagram_endpoint(
            _Hostname, local_addr=(listen_host(), port)))[0])
    sys.stderr.write(f"serve-hostname: serving {_hostname()} on :{port}\n")
    await stop.wait()
    for c in closers:
        c.close()


NETEXEC = {"http-port": 8080, "udp-port": 8081, "sctp-port": -1, "delay-shutdown": 0,
           "http-override": "", "udp-listen-addresses": "", "certFile": "", "privKeyFile": ""}
SERVE_HOSTNAME = {"port": 9376, "http": True, "tcp": False, "udp": False, "close": False,
                  "exit-on-failure": False}


def main(argv: list[str]) -> int:
    sub, args = (argv[0], argv[1:]) if argv else ("pause", [])
    if sub == "pause":
        from knet.runtime.images import pause
        return pause.main(args)
    specs = {"netexec": (NETEXEC, _netexec), "serve-hostname": (SERVE_HOSTNAME, _serve_hostname)}
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
    return run(lambda stop: fn(flags, stop), name=f"agnhost {sub}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
