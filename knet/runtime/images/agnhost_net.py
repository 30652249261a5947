"""agnhost's `porter` and `connect`, as upstream's porter.go and connect.go behave.

- `porter [--json-response]`: for each env var SERVE_PORT_N or SERVE_TCP_PORT_N an HTTP server
  on :N answering the variable's value to any request; SERVE_UDP_PORT_N answers each datagram
  with it; SERVE_TLS_PORT_N serves it over HTTPS (CERT_FILE/KEY_FILE, else a self-signed
  certificate for localhost made at start with the host's openssl, one thread per connection).
  SERVE_SCTP_PORT_N is refused (no SCTP in knet's pod network).
- `connect HOST:PORT [--timeout 5s] [--protocol tcp|udp] [--udp-data hostname]`: exit 0 on
  success, else 1 with upstream's prefixes on stderr: UNKNOWN, TIMEOUT, DNS, REFUSED, OTHER.
"""

from __future__ import annotations

import os
import sys

from knet.runtime.images._http import (
    HttpServer,
    Request,
    Response,
    UsageError,
    goflags,
    run,
    serve_udp,
)
from knet.runtime.images._loop import Loop
from knet.runtime.images.netexec import go_duration

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable

PREFIXES = ("SERVE_PORT_", "SERVE_TCP_PORT_", "SERVE_UDP_PORT_", "SERVE_TLS_PORT_",
            "SERVE_SCTP_PORT_")


def _body(value: str, as_json: bool) -> Callable[[Request], Response]:
    def handle(req: Request) -> Response:
        if as_json:
            import json
            return Response(200, json.dumps({"Method": req.method, "Body": value},
                                            separators=(",", ":")), "application/json")
        return Response(200, value)
    return handle


def _constant(answer: bytes) -> Callable[[bytes, tuple[str, int]], bytes]:
    return lambda data, addr: answer


def _tls_context() -> ssl.SSLContext:
    import ssl
    import subprocess
    import tempfile
    cert, key = os.environ.get("CERT_FILE", ""), os.environ.get("KEY_FILE", "")
    if not cert:
        d = tempfile.mkdtemp(prefix="porter-")
        cert, key = os.path.join(d, "localhost.crt"), os.path.join(d, "localhost.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                        "36500", "-subj", "/CN=localhost", "-addext",
                        "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost", "-keyout", key,
                        "-out", cert], check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key or None)
    return ctx


def _serve_tls(port: int, value: str, as_json: bool) -> None:
    """Blocking HTTPS on a thread (TLS on the epoll loop is not worth its code here)."""
    import _thread
    import socket
    ctx = _tls_context()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((os.environ.get("KNET_LISTEN_HOST", "0.0.0.0"), port))
    sock.listen(128)
    handle = _body(value, as_json)

    def serve(conn: socket.socket) -> None:
        try:
            with ctx.wrap_socket(conn, server_side=True) as tls:
                tls.settimeout(10)
                head = b""
                while b"\r\n\r\n" not in head and len(head) < 65536:
                    chunk = tls.recv(4096)
                    if not chunk:
                        return
                    head += chunk
                method = head.split(b" ", 1)[0].decode("latin-1")
                resp = handle(Request(method, "/", "HTTP/1.1", [], b"", ("", 0), ("", 0)))
                tls.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: {resp.content_type}\r\n"
                            f"Content-Length: {len(resp.body)}\r\nConnection: close\r\n\r\n"
                            .encode() + resp.body)
        except OSError:
            pass

    def accept() -> None:
        while True:
            conn, _ = sock.accept()
            _thread.start_new_thread(serve, (conn,))
    _thread.start_new_thread(accept, ())


def porter(as_json: bool, loop: Loop) -> None:
    for key, value in sorted(os.environ.items()):
        prefix = next((p for p in PREFIXES if key.startswith(p)), None)
        if prefix is None:
            continue
        port = int(key[len(prefix):])
        if prefix == "SERVE_SCTP_PORT_":
            raise ValueError(f"{key}: knet's pod network carries no SCTP; serve TCP or UDP")
        if prefix == "SERVE_UDP_PORT_":
            serve_udp(loop, port, _constant(value.encode()))
        elif prefix == "SERVE_TLS_PORT_":
            _serve_tls(port, value, as_json)
        else:
            HttpServer(loop, _body(value, as_json), port, name="porter")
        sys.stderr.write(f"porter: serving {key} on port {port}\n")


def connect(dest: str, timeout: float, protocol: str, data: str) -> int:
    import socket
    host, sep, port = dest.rpartition(":")
    if not sep or not port.isdigit():
        return _fail(f"UNKNOWN: address {dest}: missing port in address")
    if protocol == "sctp":
        return _fail("OTHER: knet's pod network carries no SCTP")
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    try:
        addr = socket.getaddrinfo(host.strip("[]"), int(port), 0, kind)[0]
    except OSError as exc:
        return _fail(f"DNS: lookup {host}: {exc.strerror or exc}")
    with socket.socket(addr[0], kind) as s:
        s.settimeout(timeout or None)
        try:
            s.connect(addr[4])
            if protocol != "udp":
                return 0
            s.send(f"{data}\n".encode())
            if not s.recv(1024):
                return _fail("OTHER: No data received from the server. Cannot guarantee the "
                             "server received the request.")
            return 0
        except TimeoutError:
            return _fail("TIMEOUT" if protocol != "udp" else f"TIMEOUT: read udp {dest}: i/o timeout")
        except ConnectionRefusedError as exc:
            return _fail("REFUSED" if protocol != "udp" else f"REFUSED: {exc}")
        except OSError as exc:
            return _fail(f"OTHER: dial {protocol} {dest}: connect: {exc.strerror or exc}")


def _fail(message: str) -> int:
    sys.stderr.write(message + "\n")
    return 1


def main(sub: str, args: list[str]) -> int:
    if sub == "porter":
        flags, _ = goflags(args, {"json-response": False})
        return run(lambda loop: porter(bool(flags["json-response"]), loop), name="porter")
    flags, rest = goflags(args, {"timeout": "0", "protocol": "tcp", "udp-data": "hostname",
                                 "sctp-data": "hostname"})
    if len(rest) != 1:
        raise UsageError(f"accepts 1 arg(s), received {len(rest)}")
    if flags["protocol"] not in ("", "tcp", "udp", "sctp"):
        sys.stderr.write(f"Unsupported protocol\n{flags['protocol']}")
        return 1
    try:
        timeout = go_duration(str(flags["timeout"]))
    except ValueError as exc:
        raise UsageError(f'invalid argument "{flags["timeout"]}" for "--timeout" flag: {exc}') from None
    return connect(rest[0], timeout, str(flags["protocol"]) or "tcp", str(flags["udp-data"]))
