"""Services + EndpointSlices (wire form) -> the ServicePort table, and the tracker's rules:
nothing before both kinds synced, bursts coalesced, changes applied within 100 ms."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from knet.proxy.balancer import Endpoint
from knet.proxy.config import ConfigTracker, ServiceTable, service_ports


def svc(name: str, *, ports: list[dict[str, Any]], ip: str = "10.96.0.20", ns: str = "default",
        **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": ports, **spec}}


def eps_slice(service: str, name: str, *, ports: list[dict[str, Any]] | None,
              endpoints: list[dict[str, Any]], ns: str = "default") -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": name, "namespace": ns,
                         "labels": {"kubernetes.io/service-name": service}},
            "ports": ports, "endpoints": endpoints}


def ep(ip: str, pod: str, ready: bool | None = True) -> dict[str, Any]:
    out: dict[str, Any] = {"addresses": [ip], "targetRef": {"kind": "Pod", "namespace": "default",
                                                           "name": pod}}
    if ready is not None:
        out["conditions"] = {"ready": ready}
    return out


WEB = svc("web", ports=[{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP",
                         "appProtocol": "http"},
                        {"name": "dns", "port": 53, "targetPort": 5353, "protocol": "UDP"}])
WEB_SLICE = eps_slice("web", "web-abc", ports=[{"name": "http", "port": 8080, "protocol": "TCP"},
                                               {"name": "dns", "port": 5353, "protocol": "UDP"}],
                      endpoints=[ep("10.244.1.3", "web-2"), ep("10.244.1.2", "web-1"),
                                 ep("10.244.1.4", "web-3", ready=False),
                                 ep("10.244.1.5", "web-4", ready=None)])


def test_ports_endpoints_and_named_target_port() -> None:
    http, dns = service_ports(WEB, [WEB_SLICE])
    assert http.key == "default/web:http" and http.service == "default/web"
    assert (http.cluster_ip, http.port, http.protocol, http.is_http) == ("10.96.0.20", 80,
                                                                         "TCP", True)
    # targetPort "web" resolved through the slice's port named like the service port;
    # not-ready endpoints left out, a missing condition means ready
    assert http.endpoints == (Endpoint("10.244.1.2", 8080), Endpoint("10.244.1.3", 8080),
                              Endpoint("10.244.1.5", 8080))
    assert [e.pod for e in http.endpoints] == ["default/web-1", "default/web-2", "default/web-4"]
    assert (dns.protocol, dns.is_http, dns.endpoints[0].port) == ("UDP", False, 5353)
    assert http.node_port is None and http.affinity_seconds is None


def test_unnamed_port_and_numeric_target() -> None:
    s = svc("one", ports=[{"port": 8000, "targetPort": 9000}], type="NodePort")
    s["spec"]["ports"][0]["nodePort"] = 30080
    sl = eps_slice("one", "one-x", ports=[{"port": 9000, "protocol": "TCP"}],
                   endpoints=[ep("10.244.2.9", "one-1")])
    (sp,) = service_ports(s, [sl])
    assert sp.key == "default/one" and sp.node_port == 30080
    assert sp.endpoints == (Endpoint("10.244.2.9", 9000),)


def test_target_port_name_no_container_has_gives_no_endpoints() -> None:
    s = svc("bad", ports=[{"name": "http", "port": 80, "targetPort": "nope"}])
    sl = eps_slice("bad", "bad-x", ports=[{"name": "http", "port": None, "protocol": "TCP"}],
                   endpoints=[ep("10.244.2.9", "bad-1")])
    (sp,) = service_ports(s, [sl])
    assert sp.endpoints == ()


def test_affinity_default_and_cap() -> None:
    a = svc("a", ports=[{"port": 80}], sessionAffinity="ClientIP")
    b = svc("b", ports=[{"port": 80}], sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 999999}})
    c = svc("c", ports=[{"port": 80}], sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 2}})
    assert [service_ports(x, [])[0].affinity_seconds for x in (a, b, c)] == [10800, 86400, 2]


def test_headless_external_name_and_sctp_are_not_proxied() -> None:
    assert service_ports(svc("h", ports=[{"port": 80}], ip="None"), []) == []
    assert service_ports(svc("e", ports=[{"port": 80}], ip="", type="ExternalName"), []) == []
    assert service_ports(svc("s", ports=[{"port": 80, "protocol": "SCTP"}]), []) == []


def test_cluster_ip_service_ignores_node_port_field() -> None:
    s = svc("c", ports=[{"port": 80, "nodePort": 30001}], type="ClusterIP")
    assert service_ports(s, [])[0].node_port is None


class Recorder:
    def __init__(self) -> None:
        self.tables: list[ServiceTable] = []
        self.times: list[float] = []

    async def apply(self, table: ServiceTable) -> None:
        self.tables.append(table)
        self.times.append(time.monotonic())


async def test_nothing_applied_until_both_synced() -> None:
    rec = Recorder()
    tr = ConfigTracker(apply=rec.apply)
    tr.on_service_add(WEB)
    tr.on_endpointslice_add(WEB_SLICE)
    tr.on_service_synced()
    await asyncio.sleep(0.15)
    assert rec.tables == []
    tr.on_endpointslice_synced()
    await tr.wait_applied()
    assert len(rec.tables) == 1
    assert sorted(rec.tables[0]) == ["default/web:dns", "default/web:http"]


async def test_burst_is_coalesced_and_applied_within_100ms() -> None:
    rec = Recorder()
    tr = ConfigTracker(apply=rec.apply)
    tr.on_service_synced()
    tr.on_endpointslice_synced()
    await tr.wait_applied()
    start = time.monotonic()
    for i in range(50):
        tr.on_service_add(svc(f"s{i}", ports=[{"port": 80}], ip=f"10.96.1.{i}"))
    await tr.wait_applied()
    assert len(rec.tables) == 2 and len(rec.tables[-1]) == 50
    assert rec.times[-1] - start < 0.1


async def test_updates_and_deletes_flow_through() -> None:
    rec = Recorder()
    tr = ConfigTracker(apply=rec.apply)
    tr.on_service_add(WEB)
    tr.on_endpointslice_add(WEB_SLICE)
    tr.on_service_synced()
    tr.on_endpointslice_synced()
    await tr.wait_applied()
    smaller = eps_slice("web", "web-abc", ports=WEB_SLICE["ports"],
                        endpoints=[ep("10.244.1.2", "web-1")])
    tr.on_endpointslice_update(WEB_SLICE, smaller)
    await tr.wait_applied()
    assert [e.ip for e in rec.tables[-1]["default/web:http"].endpoints] == ["10.244.1.2"]
    tr.on_endpointslice_delete(smaller)
    await tr.wait_applied()
    assert rec.tables[-1]["default/web:http"].endpoints == ()
    tr.on_service_delete(WEB)
    await tr.wait_applied()
    assert dict(rec.tables[-1]) == {}


async def test_a_failing_apply_does_not_stop_later_ones() -> None:
    calls: list[int] = []

    async def apply(table: ServiceTable) -> None:
        calls.append(len(table))
        if len(calls) == 1:
            raise OSError("bind failed")

    tr = ConfigTracker(apply=apply)
    tr.on_service_synced()
    tr.on_endpointslice_synced()
    await tr.wait_applied()
    tr.on_service_add(WEB)
    await tr.wait_applied()
    assert calls == [0, 2]


def test_ipv6_slices_are_not_proxied_by_the_ipv4_proxy() -> None:
    v6 = eps_slice("web", "web-v6", ports=WEB_SLICE["ports"], endpoints=[ep("fd00::5", "web-9")])
    v6["addressType"] = "IPv6"
    http, _ = service_ports(WEB, [WEB_SLICE, v6])
    assert "fd00::5" not in {e.ip for e in http.endpoints}
