"""A gRPC health server for the probe tests (grpcio is not installed: HTTP/2 by `h2`).

    python3 grpc_health_server.py PORT [SERVICE=STATUS ...]

STATUS is SERVING, NOT_SERVING or UNIMPLEMENTED (the whole Health service missing); the
empty service name is the server's overall health (`=SERVING`). An unknown service gets
grpc-status 5 (NotFound), as grpc-go's health server answers.
"""

from __future__ import annotations

import socket
import sys
import threading

import h2.config
import h2.connection
import h2.events

_CODE = {"SERVING": 1, "NOT_SERVING": 2}


def _service(frame: bytes) -> str:
    body = frame[5:]
    return body[2:2 + body[1]].decode() if body[:1] == b"\x0a" else ""


def serve_connection(sock: socket.socket, table: dict[str, str]) -> None:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False,
                                                                header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    bodies: dict[int, bytes] = {}
    while data := sock.recv(65536):
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.DataReceived):
                bodies[ev.stream_id] = bodies.get(ev.stream_id, b"") + ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                _answer(conn, ev.stream_id, table, _service(bodies.pop(ev.stream_id, b"")))
        sock.sendall(conn.data_to_send())
    sock.close()


def _answer(conn: h2.connection.H2Connection, stream: int, table: dict[str, str],
            service: str) -> None:
    head = [(":status", "200"), ("content-type", "application/grpc")]
    state = table.get("")
    if state == "UNIMPLEMENTED":
        conn.send_headers(stream, [*head, ("grpc-status", "12"), ("grpc-message",
                          "unknown service grpc.health.v1.Health")], end_stream=True)
        return
    if service not in table:
        conn.send_headers(stream, [*head, ("grpc-status", "5"),
                                   ("grpc-message", "unknown service")], end_stream=True)
        return
    conn.send_headers(stream, head)
    body = b"\x08" + bytes([_CODE[table[service]]])
    conn.send_data(stream, b"\x00" + len(body).to_bytes(4, "big") + body)
    conn.send_headers(stream, [("grpc-status", "0")], end_stream=True)


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
