"""The record table against the Kubernetes DNS specification, without sockets."""

from __future__ import annotations

from typing import Any

from dns.rcode import Rcode
from dns.rdatatype import RdataType as T

from knet.dns.records import ClusterRecords

Z = "cluster.local."


def svc(name: str, ip: str | None = "10.96.0.20", ns: str = "default",
        ports: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    s: dict[str, Any] = {"ports": ports if ports is not None else
                         [{"name": "http", "port": 80, "protocol": "TCP"}], **spec}
    if ip is not None:
        s["clusterIP"] = ip
    return {"kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": s}


def eps(svc_name: str, endpoints: list[tuple[str, str | None, bool | None]],
        name: str | None = None, ns: str = "default", port: int = 8080) -> dict[str, Any]:
    out = []
    for ip, host, ready in endpoints:
        ep: dict[str, Any] = {"addresses": [ip]}
        if host:
            ep["hostname"] = host
        if ready is not None:
            ep["conditions"] = {"ready": ready}
        out.append(ep)
    return {"kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": name or f"{svc_name}-abc", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc_name}},
            "endpoints": out, "ports": [{"name": "http", "port": port, "protocol": "TCP"}]}


def datas(records: ClusterRecords, name: str, qtype: T) -> list[str]:
    return sorted(r.data for r in records.snapshot().lookup(name, qtype).answer)


def test_cluster_ip_service_a_record_ttl_and_case() -> None:
    r = ClusterRecords()
    r.on_service_add(svc("web"))
    ans = r.snapshot().lookup("WEB.Default.svc.cluster.local", T.A)
    assert ans.rcode == Rcode.NOERROR
    assert [(a.name, a.data, a.ttl) for a in ans.answer] == [
        ("web.default.svc.cluster.local.", "10.96.0.20", 5)]


def test_srv_for_named_ports_only() -> None:
    r = ClusterRecords()
    r.on_service_add(svc("web", ports=[{"name": "http", "port": 80},
                                       {"name": "dns", "port": 53, "protocol": "UDP"}]))
    r.on_service_add(svc("plain", "10.96.0.21", ports=[{"port": 80}]))
    snap = r.snapshot()
    srv = snap.lookup("_http._tcp.web.default.svc.cluster.local", T.SRV)
    assert [a.data for a in srv.answer] == ["0 100 80 web.default.svc.cluster.local."]
    assert [a.data for a in srv.additional] == ["10.96.0.20"]
    assert datas(r, "_dns._udp.web.default.svc.cluster.local", T.SRV) == [
        "0 100 53 web.default.svc.cluster.local."]
    assert snap.lookup("_dns._tcp.web.default.svc.cluster.local", T.SRV).rcode == Rcode.NXDOMAIN
    assert snap.lookup("_http._tcp.plain.default.svc.cluster.local", T.SRV).rcode == \
        Rcode.NXDOMAIN


def test_ptr_for_cluster_ip() -> None:
    r = ClusterRecords()
    r.on_service_add(svc("web"))
    assert datas(r, "20.0.96.10.in-addr.arpa", T.PTR) == ["web.default.svc.cluster.local."]


def test_headless_returns_ready_endpoints_only() -> None:
    r = ClusterRecords()
    r.on_service_add(svc("db", None, clusterIP="None"))
    r.on_endpointslice_add(eps("db", [("10.244.1.5", None, True), ("10.244.2.7", None, None),
                                      ("10.244.1.9", None, False)]))
    assert datas(r, "db.default.svc.cluster.local", T.A) == ["10.244.1.5", "10.244.2.7"]
    # endpoints without a hostname get a system-assigned one: the dashed IP
    assert datas(r, "10-244-1-5.db.default.svc.cluster.local", T.A) == ["10.244.1.5"]
    assert r.snapshot().lookup("10-244-1-9.db.default.svc.cluster.local", T.A).rcode == \
        Rcode.NXDOMAIN


def test_headless_publish_not_ready_addresses() -> None:
    r = ClusterRecords()
    r.on_service_add(svc("db", None, clusterIP="None", publishNotReadyAddresses=True))
    r.on_endpointslice_add(eps("db", [("10.244.1.9", None, False)]))
    assert datas(r, "db.default.svc.cluster.local", T.A) == ["10.244.1.9"]


def test_headless_hostnames_srv_and_ptr() -> None:
    r = ClusterRecords()
    r.on_service_add(svc("db", None, clusterIP="None"))
    r.on_endpointslice_add(eps("db", [("10.244.1.5", "db-0", True), ("10.244.2.7", "db-1", True)],
                               port=5432))
    assert datas(r, "db-0.db.default.svc.cluster.local", T.A) == ["10.244.1.5"]
    srv = r.snapshot().lookup("_http._tcp.db.default.svc.cluster.local", T.SRV)
    assert sorted(a.data for a in srv.answer) == [
        "0 50 5432 db-0.db.default.svc.cluster.local.",
        "0 50 5432 db-1.db.default.svc.cluster.local."]
    assert sorted(a.data for a in srv.additional) == ["10.244.1.5", "10.244.2.7"]
    assert datas(r, "7.2.244.10.in-addr.arpa", T.PTR) == ["db-1.db.default.svc.cluster.local."]


def test_slices_of_one_service_are_merged_and_deleted() -> None:
    r = ClusterRecords()
    r.on_service_add(svc("db", None, clusterIP="None"))
    a = eps("db", [("10.244.1.5", None, True)], name="db-a")
    b = eps("db", [("10.244.2.7", None, True)], name="db-b")
    r.on_endpointslice_add(a)
    r.on_endpointslice_add(b)
    assert datas(r, "db.default.svc.cluster.local", T.A) == ["10.244.1.5", "10.244.2.7"]
    r.on_endpointslice_delete(a)
    assert datas(r, "db.default.svc.cluster.local", T.A) == ["10.244.2.7"]
    b2 = eps("db", [("10.244.2.7", None, False)], name="db-b")
    r.on_endpointslice_update(b, b2)
    ans = r.snapshot().lookup("db.default.svc.cluster.local", T.A)
    assert (ans.rcode, ans.answer) == (Rcode.NOERROR, ())  # the service exists: NODATA


def test_external_name_is_a_cname() -> None:
    r = ClusterRecords()
    r.on_service_add(svc("ext", None, type="ExternalName", externalName="example.com"))
    ans = r.snapshot().lookup("ext.default.svc.cluster.local", T.A)
    assert [(a.rtype, a.data) for a in ans.answer] == [(T.CNAME, "example.com.")]


def test_external_name_to_a_cluster_name_is_followed() -> None:
    r = ClusterRecords()
    r.on_service_add(svc("web"))
    r.on_service_add(svc("alias", None, type="ExternalName",
                         externalName="web.default.svc.cluster.local"))
    ans = r.snapshot().lookup("alias.default.svc.cluster.local", T.A)
    assert [(a.rtype, a.data) for a in ans.answer] == [
        (T.CNAME, "web.default.svc.cluster.local."), (T.A, "10.96.0.20")]


def test_pod_a_records() -> None:
    snap = ClusterRecords().snapshot()
    assert [a.data for a in snap.lookup("10-244-1-3.default.pod.cluster.local", T.A).answer] \
        == ["10.244.1.3"]
    assert snap.lookup("10-244-1-300.default.pod.cluster.local", T.A).rcode == Rcode.NXDOMAIN
    nodata = snap.lookup("10-244-1-3.default.pod.cluster.local", T.AAAA)
    assert (nodata.rcode, nodata.answer) == (Rcode.NOERROR, ())


def test_nxdomain_vs_nodata_and_soa() -> None:
    r = ClusterRecords()
    r.on_service_add(svc("web"))
    snap = r.snapshot()
    nx = snap.lookup("nope.default.svc.cluster.local", T.A)
    assert nx.rcode == Rcode.NXDOMAIN and not nx.outside
    assert [a.rtype for a in nx.authority] == [T.SOA]
    for name, qtype in [("web.default.svc.cluster.local", T.AAAA),
                        ("web.default.svc.cluster.local", T.TXT),
                        ("default.svc.cluster.local", T.A),     # empty non-terminal
                        ("svc.cluster.local", T.A)]:
        ans = snap.lookup(name, qtype)
        assert (ans.rcode, ans.answer) == (Rcode.NOERROR, ()), name
        assert [a.rtype for a in ans.authority] == [T.SOA]
    assert snap.lookup("other.svc.cluster.local", T.A).rcode == Rcode.NXDOMAIN
    assert [a.rtype for a in snap.lookup("cluster.local", T.SOA).answer] == [T.SOA]
    assert datas(r, "dns-version.cluster.local", T.TXT) == ['"1.1.0"']


def test_names_outside_the_zone() -> None:
    ans = ClusterRecords().snapshot().lookup("example.com", T.A)
    assert (ans.rcode, ans.outside, ans.authority) == (Rcode.NXDOMAIN, True, ())


def test_service_update_and_delete() -> None:
    r = ClusterRecords()
    old = svc("web")
    r.on_service_add(old)
    first = r.snapshot()
    assert r.snapshot() is first  # no change, no rebuild
    new = svc("web", "10.96.0.99")
    r.on_service_update(old, new)
    assert datas(r, "web.default.svc.cluster.local", T.A) == ["10.96.0.99"]
    assert first.lookup("web.default.svc.cluster.local", T.A).answer[0].data == "10.96.0.20"
    assert r.snapshot().lookup("20.0.96.10.in-addr.arpa", T.PTR).answer == ()
    r.on_service_delete(new)
    assert r.snapshot().lookup("web.default.svc.cluster.local", T.A).rcode == Rcode.NXDOMAIN


def test_configurable_cluster_domain_and_dual_stack() -> None:
    r = ClusterRecords(cluster_domain="corp.example")
    r.on_service_add(svc("web", clusterIPs=["10.96.0.20", "fd00::20"]))
    assert datas(r, "web.default.svc.corp.example", T.A) == ["10.96.0.20"]
    assert datas(r, "web.default.svc.corp.example", T.AAAA) == ["fd00::20"]
    assert r.snapshot().lookup("web.default.svc.cluster.local", T.A).outside


def test_synced_needs_both() -> None:
    r = ClusterRecords()
    r.on_service_synced()
    assert not r.synced
    r.on_endpointslice_synced()
    assert r.synced
