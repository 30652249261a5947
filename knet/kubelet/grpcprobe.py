"""gRPC probes (`grpc: {port, service}`): the gRPC Health Checking Protocol's
`grpc.health.v1.Health/Check`, spoken over HTTP/2 cleartext (h2c, prior knowledge) with the
`h2` state machine on one connection per probe, from the node's netns like the kubelet.

The request is one length-prefixed HealthCheckRequest{service}; the answer is SERVING or
not, or a gRPC status in the trailers. Failures carry the kubelet's words
(pkg/probe/grpc): `timeout: failed to connect service "10.244.1.5:9000" within 1s: ...`,
`service unhealthy (responded with "NOT_SERVING")`, `this server does not implement the grpc
health protocol (grpc.health.v1.Health): ...`, `error: health rpc probe failed: ...`.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable

__all__ = ["grpc_check"]

Check = Callable[[], Awaitable[tuple[bool, str]]]
Connect = Callable[[str | None, str, int, float], Awaitable[socket.socket]]
_PATH = "/grpc.health.v1.Health/Check"
_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
_CODES = {1: "Canceled", 2: "Unknown", 4: "DeadlineExceeded", 5: "NotFound",
          12: "Unimplemented", 13: "Internal", 14: "Unavailable"}


def request_message(service: str) -> bytes:
    """The gRPC frame of HealthCheckRequest{service}: flag 0, big-endian length, protobuf."""
    raw = service.encode()
    body = b"\x0a" + _varint(len(raw)) + raw if raw else b""
    return b"\x00" + len(body).to_bytes(4, "big") + body


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def serving_status(frame: bytes) -> int:
    """HealthCheckResponse.status (field 1, varint) from one gRPC frame; 0 if absent."""
    body, i = frame[5:], 0
    while i < len(body):
        key = body[i]
        i += 1
        value = shift = 0
        while i < len(body):
            b = body[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        if key == 0x08:
            return value
        if key & 7 == 2:            # skip an unknown length-delimited field
            i += value
    return 0


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _exchange(sock: socket.socket, host: str, port: int, service: str,
                    deadline: float) -> tuple[int | None, int | None, str]:
    """(serving status, grpc-status, grpc-message) of one Check call."""
    import h2.config
    import h2.connection
    import h2.events

    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                header_encoding="utf-8"))
    conn.initiate_connection()
    stream = conn.get_next_available_stream_id()
    conn.send_headers(stream, [(":method", "POST"), (":scheme", "http"), (":path", _PATH),
                               (":authority", f"{host}:{port}"),
                               ("content-type", "application/grpc"), ("te", "trailers"),
                               ("user-agent", "kube-probe/1.32")])
    conn.send_data(stream, request_message(service), end_stream=True)
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, conn.data_to_send())
    data, status, message, serving = b"", None, "", None
    while True:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536),
                                       max(deadline - time.monotonic(), 0.001))
        if not chunk:
            raise ConnectionError("the connection closed before the answer")
        for event in conn.receive_data(chunk):
            if isinstance(event, h2.events.DataReceived) and event.stream_id == stream:
                data += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, stream)
            elif isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                headers = {_text(k): _text(v) for k, v in event.headers or []}
                if "grpc-status" in headers:
                    status = int(headers["grpc-status"])
                    message = headers.get("grpc-message", "")
            elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream:
                raise ConnectionError(f"stream reset by the server (code {event.error_code})")
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                if len(data) >= 5:
                    serving = serving_status(data)
                return serving, status, message
        if out := conn.data_to_send():
            await loop.sock_sendall(sock, out)


def grpc_check(*, netns: str | None, host: str, port: int, service: str, timeout: float,
               connect: Connect) -> Check:
    addr = f"{host}:{port}"

    async def check() -> tuple[bool, str]:
        try:
            import h2  # noqa: F401 - a declared dependency; say so if it is missing
        except ImportError:
            return False, ("gRPC probes need the Python package h2 on the node "
                           "(pip install 'h2>=4.1,<5'); use tcpSocket meanwhile")
        deadline = time.monotonic() + timeout
        try:
            sock = await connect(netns, host, port, timeout)
        except (TimeoutError, OSError) as exc:
            why = "context deadline exceeded" if isinstance(exc, TimeoutError) else str(exc)
            return False, f'timeout: failed to connect service "{addr}" within {timeout:g}s: ' \
                          + why
        try:
            serving, status, message = await _exchange(sock, host, port, service, deadline)
        except TimeoutError:
            return False, f"timeout: health rpc did not complete within {timeout:g}s"
        except Exception as exc:  # noqa: BLE001 - a probe failure, in the kubelet's words
            return False, f"error: health rpc probe failed: {exc}"
        finally:
            sock.close()
        if status not in (None, 0):
            desc = f"rpc error: code = {_CODES.get(status, status)} desc = {message}"
            if status == 12:
                return False, ("this server does not implement the grpc health protocol "
                               f"(grpc.health.v1.Health): {desc}")
            return False, f"error: health rpc probe failed: {desc}"
        if serving != 1:
            return False, f'service unhealthy (responded with "{_STATUS.get(serving or 0)}")'
        return True, ""
    return check
