"""The proxy in real namespaces (inside `knet sandbox`): a "node" netns with a pod bridge and
an address-only service device, three backend "pod" netns running a whoami server, two
"client pod" netns, and an "outside" netns on the node's underlay. The proxy runs in this
process and serves the node netns; clients are real `curl` and sockets in the client pods."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from knet.dataplane import nsutil
from knet.proxy.flows import FlowRecord, FlowRing
from knet.proxy.proxier import Proxier

NODE, OUTSIDE = "kp-node", "kp-out"
PODS = {"kp-b1": "10.244.1.11", "kp-b2": "10.244.1.12", "kp-b3": "10.244.1.13",
        "kp-c1": "10.244.1.21", "kp-c2": "10.244.1.22"}
BACKENDS = ["kp-b1", "kp-b2", "kp-b3"]
NODE_IP, OUTSIDE_IP = "172.18.0.2", "172.18.0.9"

WHOAMI = r'''
import socket, sys, threading
name, port = sys.argv[1], int(sys.argv[2])
def serve(c):
    buf = b""
    try:
        while True:
            while b"\r\n\r\n" not in buf:
                data = c.recv(65536)
                if not data:
                    return
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            body = name.encode() + b"\n"
            close = b"connection: close" in head.lower()
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n" % (
                len(body), b"Connection: close\r\n" if close else b"") + body)
            if close:
                return
    finally:
        c.close()
def tcp():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(128)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    while True:
        data, addr = s.recvfrom(65535)
        s.sendto(name.encode() + b"|" + data, addr)
threading.Thread(target=udp, daemon=True).start()
tcp()
'''


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def build_topology() -> None:
    sh("ip", "netns", "add", NODE)
    sh("ip", "-n", NODE, "link", "set", "lo", "up")
    sh("ip", "-n", NODE, "link", "add", "cni0", "type", "bridge")
    sh("ip", "-n", NODE, "addr", "add", "10.244.1.1/24", "dev", "cni0")
    sh("ip", "-n", NODE, "link", "set", "cni0", "up")
    sh("ip", "-n", NODE, "link", "add", "knet-svc", "type", "bridge")  # address-only device
    sh("ip", "-n", NODE, "link", "set", "knet-svc", "up")
    for i, (ns, ip) in enumerate(PODS.items()):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", NODE, "link", "add", f"veth{i}", "type", "veth", "peer", "name", "eth0",
           "netns", ns)
        sh("ip", "-n", NODE, "link", "set", f"veth{i}", "master", "cni0", "up")
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", "10.244.1.1")
    sh("ip", "netns", "add", OUTSIDE)
    sh("ip", "-n", OUTSIDE, "link", "set", "lo", "up")
    sh("ip", "-n", NODE, "link", "add", "eth0", "type", "veth", "peer", "name", "up0",
       "netns", OUTSIDE)
    sh("ip", "-n", NODE, "addr", "add", f"{NODE_IP}/24", "dev", "eth0")
    sh("ip", "-n", NODE, "link", "set", "eth0", "up")
    sh("ip", "-n", OUTSIDE, "addr", "add", f"{OUTSIDE_IP}/24", "dev", "up0")
    sh("ip", "-n", OUTSIDE, "link", "set", "up0", "up")


class IpAddresses:
    """AddressManager for the test: `ip addr` on the node's address-only device."""

    async def add_service_ip(self, ip: str) -> None:
        sh("ip", "-n", NODE, "addr", "replace", f"{ip}/32", "dev", "knet-svc")

    async def remove_service_ip(self, ip: str) -> None:
        sh("ip", "-n", NODE, "addr", "del", f"{ip}/32", "dev", "knet-svc")


@pytest.fixture(scope="module")
def topology() -> Iterator[None]:
    build_topology()
    procs = [subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", WHOAMI, ns,
                               "8080"]) for ns in BACKENDS]
    deadline = time.monotonic() + 10
    for ns in BACKENDS:
        while True:
            with nsutil.in_netns(NODE):
                s = socket.socket()
            try:
                s.settimeout(0.5)
                s.connect((PODS[ns], 8080))
                break
            except OSError:
                assert time.monotonic() < deadline, f"backend {ns} did not start"
                time.sleep(0.05)
            finally:
                s.close()
    yield
    for p in procs:
        p.terminate()
        p.wait(5)
    for ns in [*PODS, OUTSIDE, NODE]:
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def service(name: str, ip: str, port: int, *, node_port: int | None = None,
            app_protocol: str | None = None, protocol: str = "TCP",
            **spec: Any) -> dict[str, Any]:
    p: dict[str, Any] = {"name": "p", "port": port, "targetPort": 8080, "protocol": protocol}
    if node_port:
        p["nodePort"] = node_port
        spec["type"] = "NodePort"
    if app_protocol:
        p["appProtocol"] = app_protocol
    return {"kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"clusterIP": ip, "ports": [p], **spec}}


def slice_for(name: str, backends: list[str], protocol: str = "TCP") -> dict[str, Any]:
    return {"kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": f"{name}-1", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": name}},
            "ports": [{"name": "p", "port": 8080, "protocol": protocol}],
            "endpoints": [{"addresses": [PODS[b]], "conditions": {"ready": True},
                           "targetRef": {"kind": "Pod", "namespace": "default", "name": b}}
                          for b in backends]}


@pytest.fixture
async def proxier(topology: None) -> AsyncIterator[Proxier]:
    p = Proxier("node-1", netns=NODE, node_ips=[NODE_IP], address_manager=IpAddresses(),
                flow_ring=FlowRing(), udp_idle_timeout=0.5)
    objs = [service("web", "10.96.0.50", 80), slice_for("web", BACKENDS),
            service("mesh", "10.96.0.51", 80, app_protocol="http"), slice_for("mesh", BACKENDS),
            service("sticky", "10.96.0.52", 80, sessionAffinity="ClientIP"),
            slice_for("sticky", BACKENDS),
            service("np", "10.96.0.53", 80, node_port=30080), slice_for("np", BACKENDS),
            service("echo", "10.96.0.54", 53, protocol="UDP"),
            slice_for("echo", BACKENDS, "UDP"),
            service("empty", "10.96.0.55", 80)]
    for o in objs:
        (p.on_service_add if o["kind"] == "Service" else p.on_endpointslice_add)(o)
    p.on_service_synced()
    p.on_endpointslice_synced()
    await p.wait_applied()
    yield p
    await p.stop()


async def run(ns: str, *cmd: str, timeout: float = 10) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec("ip", "netns", "exec", ns, *cmd,
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode()


async def curl(ns: str, url: str, *extra: str) -> str:
    rc, out = await run(ns, "curl", "-sS", "--max-time", "5", *extra, url)
    assert rc == 0, f"curl {url} from {ns}: rc {rc}: {out}"
    return out.strip()


async def flows(proxier: Proxier, count: int) -> list[FlowRecord]:
    """The ring's records once `count` are there: a TCP flow is recorded when the proxy has
    closed both sides, which can be just after curl has its answer and exits."""
    deadline = asyncio.get_running_loop().time() + 5
    while len(proxier.ring.records()) < count and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    return proxier.ring.records()


async def test_thirty_requests_each_backend_ten_times_in_order(proxier: Proxier) -> None:
    answers = [await curl("kp-c1", "http://10.96.0.50/") for _ in range(30)]
    assert answers == BACKENDS * 10
    records = await flows(proxier, 30)
    assert len(records) == 30
    assert [f.reason for f in records] == ["rr#0", "rr#1", "rr#2"] * 10
    assert {(f.client_ip, f.verdict) for f in records} == {("10.244.1.21", "FORWARDED")}
    assert [f.endpoint_pod for f in records] == [f"default/{b}" for b in BACKENDS] * 10


async def test_http_mesh_path_balances_per_request_and_names_upstream(
        proxier: Proxier) -> None:
    out = await curl("kp-c1", "http://10.96.0.51/", "-D", "-")
    assert "x-knet-upstream: default/kp-b1" in out and out.endswith("kp-b1")
    # one curl, 6 requests on one keep-alive connection: balanced per request
    urls = ["http://10.96.0.51/"] * 6
    rc, out = await run("kp-c1", "curl", "-sS", "--max-time", "5", *urls)
    assert rc == 0 and out.split() == ["kp-b2", "kp-b3", "kp-b1"] * 2
    http = [f for f in await flows(proxier, 7) if f.protocol == "http"]
    assert len(http) == 7 and {f.status for f in http} == {200}


async def test_client_ip_affinity_pins_and_clients_are_independent(proxier: Proxier) -> None:
    first = [await curl("kp-c1", "http://10.96.0.52/") for _ in range(10)]
    second = [await curl("kp-c2", "http://10.96.0.52/") for _ in range(10)]
    assert len(set(first)) == 1 and len(set(second)) == 1 and first[0] != second[0]
    reasons = [f.reason for f in await flows(proxier, 20)]
    assert reasons.count("affinity-hit") == 18


async def test_node_port_from_another_netns(proxier: Proxier) -> None:
    answers = [await curl(OUTSIDE, f"http://{NODE_IP}:30080/") for _ in range(3)]
    assert answers == BACKENDS
    assert {f.client_ip for f in await flows(proxier, 3)} == {OUTSIDE_IP}


async def test_udp_echo_through_the_service(proxier: Proxier) -> None:
    script = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
              "s.settimeout(2); s.sendto(b'ping', ('10.96.0.54', 53)); "
              "d, a = s.recvfrom(100); print(d.decode(), a[0], a[1])")
    rc, out = await run("kp-c1", sys.executable, "-c", script)
    assert rc == 0 and out.split() == ["kp-b1|ping", "10.96.0.54", "53"]


async def test_no_endpoints_is_refused_at_once(proxier: Proxier) -> None:
    start = time.monotonic()
    rc, out = await run("kp-c1", "curl", "-sS", "--max-time", "5", "http://10.96.0.55/")
    assert rc in (7, 52, 56), out  # refused / empty reply / reset, never a timeout (28)
    assert time.monotonic() - start < 1.5
    (flow,) = await flows(proxier, 1)
    assert (flow.verdict, flow.service) == ("REFUSED", "default/empty")


async def test_endpoint_removal_applies_and_traffic_moves(proxier: Proxier) -> None:
    proxier.on_endpointslice_update(slice_for("web", BACKENDS), slice_for("web", ["kp-b3"]))
    await proxier.wait_applied()
    answers = {await curl("kp-c1", "http://10.96.0.50/") for _ in range(5)}
    assert answers == {"kp-b3"}
