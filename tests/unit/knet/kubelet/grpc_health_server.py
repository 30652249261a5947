"""A gRPC health server for the probe tests, stdlib only (it runs in pods under the host's
system python, which has neither grpcio nor h2): just enough HTTP/2 to answer
grpc.health.v1.Health/Check, with HPACK literals on the way out and the request's header
block skipped (only its DATA, the HealthCheckRequest, matters).

    python3 grpc_health_server.py PORT [SERVICE=STATUS ...]

STATUS is SERVING, NOT_SERVING or UNIMPLEMENTED (the whole Health service missing); the
empty service name is the server's overall health (`=SERVING`). An unknown service gets
grpc-status 5 (NotFound), as grpc-go's health server answers.
"""

from __future__ import annotations

import socket
import struct
import sys
import threading

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, SETTINGS, PING = 0, 1, 4, 6
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
_CODE = {"SERVING": 1, "NOT_SERVING": 2}


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + \
        struct.pack(">I", stream) + payload


def literal(name: str, value: str) -> bytes:
    """HPACK literal header field without indexing, new name, no Huffman."""
    n, v = name.encode(), value.encode()
    assert len(n) < 127 and len(v) < 127
    return b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v


def headers(stream: int, fields: list[tuple[str, str]], *, end: bool) -> bytes:
    block = b"".join(b"\x88" if f == (":status", "200") else literal(*f) for f in fields)
    return frame(HEADERS, END_HEADERS | (END_STREAM if end else 0), stream, block)


def _read(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise EOFError
        out += chunk
    return out


def _service(body: bytes) -> str:
    msg = body[5:]
    return msg[2:2 + msg[1]].decode() if msg[:1] == b"\x0a" else ""


def answer(stream: int, table: dict[str, str], service: str) -> bytes:
    head = [(":status", "200"), ("content-type", "application/grpc")]
    if table.get("") == "UNIMPLEMENTED":
        return headers(stream, [*head, ("grpc-status", "12"),
                                ("grpc-message", "unknown service grpc.health.v1.Health")],
                       end=True)
    if service not in table:
        return headers(stream, [*head, ("grpc-status", "5"),
                                ("grpc-message", "unknown service")], end=True)
    body = b"\x08" + bytes([_CODE[table[service]]])
    return (headers(stream, head, end=False)
            + frame(DATA, 0, stream, b"\x00" + struct.pack(">I", len(body)) + body)
            + headers(stream, [("grpc-status", "0")], end=True))


def serve_connection(sock: socket.socket, table: dict[str, str]) -> None:
    try:
        if _read(sock, len(PREFACE)) != PREFACE:
            return
        sock.sendall(frame(SETTINGS, 0, 0))
        bodies: dict[int, bytes] = {}
        while True:
            head = _read(sock, 9)
            length = struct.unpack(">I", b"\x00" + head[:3])[0]
            kind, flags, stream = head[3], head[4], struct.unpack(">I", head[5:])[0] & 0x7FFFFFFF
            payload = _read(sock, length)
            if kind == SETTINGS and not flags & ACK:
                sock.sendall(frame(SETTINGS, ACK, 0))
            elif kind == PING and not flags & ACK:
                sock.sendall(frame(PING, ACK, 0, payload))
            elif kind in (HEADERS, DATA):
                if kind == DATA:
                    bodies[stream] = bodies.get(stream, b"") + payload
                if flags & END_STREAM:
                    sock.sendall(answer(stream, table, _service(bodies.pop(stream, b""))))
    except (EOFError, OSError):
        pass
    finally:
        sock.close()


def main(argv: list[str]) -> None:
    port = int(argv[0])
    table = dict(a.split("=", 1) for a in argv[1:]) or {"": "SERVING"}
    srv = socket.create_server(("0.0.0.0", port))
    print(f"grpc health on {port}: {table}", flush=True)
    while True:
        sock, _ = srv.accept()
        threading.Thread(target=serve_connection, args=(sock, table), daemon=True).start()


if __name__ == "__main__":
    main(sys.argv[1:])
