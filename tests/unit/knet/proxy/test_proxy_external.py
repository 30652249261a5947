"""Traffic from outside through the node proxy, on loopback (no root): a LoadBalancer address
and this node's externalIP are served on the Service port; loadBalancerSourceRanges drop a
client outside them (no answer at all, like kube-proxy's DROP) and let one inside through;
externalTrafficPolicy Local serves external traffic from this node's endpoints only while
ClusterIP traffic uses all; healthCheckNodePort answers 200/503 in kube-proxy's shape; the
announcing node routes its addresses on the host side and withdraws them."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import urllib.request
from typing import Any

import pytest
from proxy_testkit import (
    TcpBackend,
    UdpBackend,
    UdpClient,
    endpoint_slice,
    free_port,
    loopback_net,
    service,
    start_proxier,
    tcp_ask,
)

from knet.dataplane.hostroutes import FakeHostRoutes
from knet.proxy.sourceranges import program


def lb_service(net: str, *, lb_ip: str, node_port: int, announced: str | None = None,
               **spec: Any) -> dict[str, Any]:
    svc = service("web", f"{net}1", [{"port": 8080, "nodePort": node_port, "protocol": "TCP"}],
                  type="LoadBalancer", **spec)
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": lb_ip}]}}
    if announced:
        svc["metadata"]["annotations"] = {"lb.knet.dev/announced-by": announced}
    return svc


def node_slice(backend: TcpBackend, node: str) -> dict[str, Any]:
    """One slice per backend (each listens on its own port), its endpoint on `node`."""
    sl = endpoint_slice("web", [{"port": backend.port, "protocol": "TCP"}],
                        [(backend.ip, backend.name)])
    sl["metadata"]["name"] = f"web-{backend.name}"
    sl["endpoints"][0]["nodeName"] = node
    return sl


def _run(code: bytes, src: str) -> int:
    """A tiny cBPF interpreter for the instructions program() emits."""
    ins = [struct.unpack("HBBI", code[i:i + 8]) for i in range(0, len(code), 8)]
    pc = acc = 0
    while True:
        op, jt, jf, k = ins[pc]
        if op == 0x20:
            acc = struct.unpack("!I", socket.inet_aton(src))[0]
        elif op == 0x54:
            acc &= k
        elif op == 0x15:
            pc += jt if acc == k else jf
        elif op == 0x06:
            return k
        pc += 1


def test_source_range_program() -> None:
    code = program(["10.0.0.0/8", "192.168.1.0/24"], also=["172.18.255.1"])
    verdicts = {s: _run(code, s) != 0 for s in ("10.1.2.3", "192.168.1.9", "192.168.2.1",
                                                "172.18.255.1", "172.18.0.1")}
    assert verdicts == {"10.1.2.3": True, "192.168.1.9": True, "192.168.2.1": False,
                        "172.18.255.1": True, "172.18.0.1": False}
    assert _run(program([]), "1.2.3.4") == 0


async def _connects(ip: str, port: int, *, source: str | None = None,
                    timeout: float = 0.7) -> bool:
    try:
        _, w = await asyncio.wait_for(asyncio.open_connection(
            ip, port, local_addr=(source, 0) if source else None), timeout)
    except (TimeoutError, OSError):
        return False
    w.close()
    return True


async def test_load_balancer_and_external_ips_are_served() -> None:
    net = loopback_net()
    node_ip, lb_ip, other_ext = f"{net}100", f"{net}200", f"{net}201"
    b1 = await TcpBackend("web-1", f"{net}11").start()
    node_port = free_port(node_ip)
    svc = lb_service(net, lb_ip=lb_ip, node_port=node_port,
                     externalIPs=[node_ip, other_ext])
    p = await start_proxier([svc, node_slice(b1, "node-1")], node_ips=[node_ip])
    try:
        assert (await tcp_ask(lb_ip, 8080)).startswith(b"web-1|")
        assert (await tcp_ask(node_ip, 8080)).startswith(b"web-1|")    # externalIP: ours
        assert ("TCP", other_ext, 8080) not in p.listeners             # not this node's
        assert lb_ip in p.addresses.ips                                 # on knet-svc
        # the address goes when the status loses it
        svc2 = json.loads(json.dumps(svc))
        svc2["status"] = {"loadBalancer": {}}
        p.on_service_update(svc, svc2)
        await p.wait_applied()
        assert ("TCP", lb_ip, 8080) not in p.listeners and lb_ip not in p.addresses.ips
    finally:
        await p.stop()
        await b1.stop()


async def test_source_ranges_drop_clients_outside() -> None:
    net = loopback_net()
    node_ip, lb_ip = f"{net}100", f"{net}200"
    inside, outside = f"{net}50", f"{net}60"
    b1 = await TcpBackend("web-1", f"{net}11").start()
    svc = lb_service(net, lb_ip=lb_ip, node_port=free_port(node_ip),
                     loadBalancerSourceRanges=[f"{inside}/32"])
    p = await start_proxier([svc, node_slice(b1, "node-1")], node_ips=[node_ip])
    try:
        assert await _connects(lb_ip, 8080, source=inside)
        assert not await _connects(lb_ip, 8080, source=outside)       # dropped: no answer
        assert await _connects(node_ip, svc["spec"]["ports"][0]["nodePort"], source=outside)
        svc2 = json.loads(json.dumps(svc))
        del svc2["spec"]["loadBalancerSourceRanges"]
        p.on_service_update(svc, svc2)
        await p.wait_applied()
        assert await _connects(lb_ip, 8080, source=outside)           # filter taken off
    finally:
        await p.stop()
        await b1.stop()


def _get(url: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), dict(err.headers)


async def test_local_policy_and_health_check() -> None:
    net = loopback_net()
    node_ip, lb_ip = f"{net}100", f"{net}200"
    here = await TcpBackend("web-here", f"{net}11").start()
    there = await TcpBackend("web-there", f"{net}12").start()
    hc = free_port(node_ip)
    svc = lb_service(net, lb_ip=lb_ip, node_port=free_port(node_ip),
                     externalTrafficPolicy="Local", healthCheckNodePort=hc)
    p = await start_proxier([svc, node_slice(here, "node-1"), node_slice(there, "node-2")],
                            node_ips=[node_ip])
    try:
        external = {(await tcp_ask(lb_ip, 8080)).split(b"|")[0] for _ in range(6)}
        assert external == {b"web-here"}                               # Local: ours only
        cluster = {(await tcp_ask(f"{net}1", 8080)).split(b"|")[0] for _ in range(6)}
        assert cluster == {b"web-here", b"web-there"}                  # ClusterIP: all
        status, body, headers = await asyncio.to_thread(_get, f"http://{node_ip}:{hc}/healthz")
        assert (status, body) == (200, {"service": {"namespace": "default", "name": "web"},
                                        "localEndpoints": 1, "serviceProxyHealthy": True})
        assert headers["X-Load-Balancing-Endpoint-Weight"] == "1"
        p.on_endpointslice_delete(node_slice(here, "node-1"))
        await p.wait_applied()
        status, body, _ = await asyncio.to_thread(_get, f"http://{node_ip}:{hc}/healthz")
        assert (status, body["localEndpoints"]) == (503, 0)
    finally:
        await p.stop()
        await here.stop()
        await there.stop()
    with pytest.raises(OSError):                                        # server closed
        await asyncio.to_thread(_get, f"http://{node_ip}:{hc}/healthz")


async def test_announcer_routes_its_addresses_on_the_host() -> None:
    net = loopback_net()
    node_ip, lb_ip = f"{net}100", f"{net}200"
    host: dict[str, str] = {}
    svc = lb_service(net, lb_ip=lb_ip, node_port=free_port(node_ip), announced="node-1")
    p = await start_proxier([svc], node_ips=[node_ip], routes=FakeHostRoutes("node-1", host))
    try:
        assert host == {lb_ip: node_ip}
        moved = json.loads(json.dumps(svc))
        moved["metadata"]["annotations"]["lb.knet.dev/announced-by"] = "node-2"
        host[lb_ip] = "172.18.0.3"          # node-2's proxy took it over first
        p.on_service_update(svc, moved)
        await p.wait_applied()
        assert host == {lb_ip: "172.18.0.3"}                           # not withdrawn: not ours
        p.on_service_update(moved, svc)
        await p.wait_applied()
        assert host == {lb_ip: node_ip}
    finally:
        await p.stop()
    assert host == {}                                                   # withdrawn on stop


async def test_udp_load_balancer_and_its_source_ranges() -> None:
    net = loopback_net()
    node_ip, lb_ip, inside, outside = f"{net}100", f"{net}200", f"{net}50", f"{net}60"
    backend = await UdpBackend("dns-1", f"{net}11").start()
    svc = service("dns", f"{net}1", [{"port": 5353, "protocol": "UDP",
                                      "nodePort": free_port(node_ip, socket.SOCK_DGRAM)}],
                  type="LoadBalancer", loadBalancerSourceRanges=[f"{inside}/32"])
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": lb_ip}]}}
    sl = endpoint_slice("dns", [{"port": backend.port, "protocol": "UDP"}],
                        [(backend.ip, "dns-1")])
    p = await start_proxier([svc, sl], node_ips=[node_ip])
    ok, shut = await UdpClient.open(inside), await UdpClient.open(outside)
    try:
        data, src = await ok.ask(b"q", (lb_ip, 5353))
        assert (data, src) == (b"dns-1|q", (lb_ip, 5353))
        with pytest.raises(TimeoutError):
            await shut.ask(b"q", (lb_ip, 5353), timeout=0.5)            # dropped by the filter
        assert backend.seen == 1
    finally:
        ok.close()
        shut.close()
        await p.stop()
        backend.stop()
