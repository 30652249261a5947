"""gRPC probes against a real HTTP/2 gRPC health server (grpc_health_server.py, on
loopback): SERVING passes; NOT_SERVING, an unknown service, a server without the Health
service and a closed port fail with the kubelet's words. Before, a grpc probe was refused
("not supported") and the pod was never Ready."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from knet.kubelet.grpcprobe import request_message, serving_status
from knet.kubelet.probes import make_check

SERVER = Path(__file__).with_name("grpc_health_server.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server() -> Iterator[object]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*table: str) -> int:
        port = free_port()
        procs.append(subprocess.Popen([sys.executable, str(SERVER), str(port), *table],
                                      stdout=subprocess.DEVNULL))
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return port
            except OSError:
                assert time.monotonic() < deadline, "the gRPC server did not start"
                time.sleep(0.05)
    yield start
    for p in procs:
        p.kill()
        p.wait()


async def probe(port: int, service: str | None = None) -> tuple[bool, str]:
    grpc: dict[str, object] = {"port": port}
    if service is not None:
        grpc["service"] = service
    check = make_check({"grpc": grpc, "timeoutSeconds": 2}, {"name": "c"}, netns=None,
                       pod_ip="127.0.0.1", exec_fn=None)  # type: ignore[arg-type]
    return await check()


def test_the_wire_messages() -> None:
    assert request_message("") == b"\x00\x00\x00\x00\x00"
    assert request_message("db") == b"\x00\x00\x00\x00\x04\x0a\x02db"
    assert serving_status(b"\x00\x00\x00\x00\x02\x08\x01") == 1


async def test_serving_and_not(server: object) -> None:
    port = server("=SERVING", "db=NOT_SERVING")  # type: ignore[operator]
    assert await probe(port) == (True, "")
    assert await probe(port, "db") == (False, 'service unhealthy (responded with '
                                              '"NOT_SERVING")')
    ok, why = await probe(port, "cache")
    assert not ok and why == ("error: health rpc probe failed: rpc error: code = NotFound "
                              "desc = unknown service")


async def test_a_server_without_the_health_service(server: object) -> None:
    port = server("=UNIMPLEMENTED")  # type: ignore[operator]
    ok, why = await probe(port)
    assert not ok and why.startswith("this server does not implement the grpc health "
                                     "protocol (grpc.health.v1.Health): rpc error: code = "
                                     "Unimplemented")


async def test_nothing_listening() -> None:
    port = free_port()
    ok, why = await probe(port)
    assert not ok and why.startswith(f'timeout: failed to connect service "127.0.0.1:{port}" '
                                     "within 2s: ")
