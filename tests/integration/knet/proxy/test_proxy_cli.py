"""`knet proxy` as a user runs it: against a real `knet control` API server (HTTP, bearer
token, watch), serving a NodePort in this sandbox's netns, with flows on --flows-port."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from control.client import HttpClient

NODE_IP, BACKEND_IP, FLOWS_PORT = "127.0.0.100", "127.0.0.11", 10999


def backend() -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((BACKEND_IP, 8080))
    s.listen(16)

    def serve() -> None:
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            with c:
                c.recv(1000)
                c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\nbackend-1")

    threading.Thread(target=serve, daemon=True).start()
    return s


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Path]:
    control = subprocess.Popen([sys.executable, "-m", "knet.cli.main", "control", "--state-dir",
                                str(tmp_path), "--store", "memory://", "--no-controllers"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kubeconfig = tmp_path / "kubeconfig"
    deadline = time.monotonic() + 20
    while not kubeconfig.exists():
        assert time.monotonic() < deadline and control.poll() is None, "knet control did not start"
        time.sleep(0.1)
    proxy = subprocess.Popen([sys.executable, "-m", "knet.cli.main", "proxy", "--node", "node-1",
                              "--kubeconfig", str(kubeconfig), "--netns", "-", "--no-addresses",
                              "--node-ip", NODE_IP, "--flows-port", str(FLOWS_PORT)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield kubeconfig
    for p in (proxy, control):
        p.terminate()
        p.wait(10)


async def create_web(kubeconfig: Path) -> None:
    c = HttpClient.from_kubeconfig(kubeconfig)
    try:
        await c.create("services", {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"type": "NodePort",
                     "ports": [{"name": "p", "port": 80, "targetPort": 8080, "nodePort": 30080}]}},
            namespace="default")
        await c.create("endpointslices", {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "ports": [{"name": "p", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [BACKEND_IP], "conditions": {"ready": True},
                           "targetRef": {"kind": "Pod", "namespace": "default",
                                         "name": "web-1"}}]}, namespace="default")
    finally:
        await c.close()


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=2) as r:
        return bytes(r.read())


def test_knet_proxy_serves_a_node_port_from_the_api(cluster: Path) -> None:
    srv = backend()
    try:
        asyncio.run(create_web(cluster))
        deadline, answer = time.monotonic() + 15, b""
        while time.monotonic() < deadline:
            try:
                answer = get(f"http://{NODE_IP}:30080/")
                break
            except OSError:
                time.sleep(0.1)
        assert answer == b"backend-1"
        flows = json.loads(get(f"http://127.0.0.1:{FLOWS_PORT}/flows?limit=1"))
        assert [(f["service"], f["endpoint_pod"], f["verdict"]) for f in flows] == [
            ("default/web", "default/web-1", "FORWARDED")]
    finally:
        srv.close()
