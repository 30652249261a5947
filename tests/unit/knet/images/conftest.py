"""Start a built-in image program as a real subprocess on 127.0.0.1 (argv from the catalog's
`resolve`, exactly what the kubelet will exec), and check it stops with 0 on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from knet.runtime.images import resolve


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket() as t, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(port)
    raise RuntimeError("no free port")


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"program exited with {proc.returncode}: "
                                 f"{proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise AssertionError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


Starter = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def start() -> Iterator[Starter]:
    procs: list[subprocess.Popen[bytes]] = []

    def _start(image: str, args: list[str] | None = None, *, command: list[str] | None = None,
               port: int | None = None, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        argv = resolve(image, command, args)
        full_env = {**os.environ, "KNET_LISTEN_HOST": "127.0.0.1", **(env or {})}
        proc = subprocess.Popen(argv, env=full_env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        procs.append(proc)
        if port is not None:
            wait_port(port, proc)
        return proc

    yield _start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise AssertionError(f"{proc.args} ignored SIGTERM for 3 s") from None


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def new_port() -> Callable[[], int]:
    return free_port
