"""The nftables mode's compiler (knet.proxy.nftcompile), without root: the commands it makes
for a ServicePort table, applied to FakeNft (the real kernel runs the same batches in
tests/integration/knet/proxy/test_nftables_mode_e2e.py), and what a second sync keeps,
rewrites and deletes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from knet.dataplane.nft import FakeNft
from knet.proxy.balancer import Endpoint
from knet.proxy.config import ServicePort
from knet.proxy.nftcompile import (
    FAMILY,
    TABLE,
    affinity_set,
    compile_sync,
    endpoint_chain,
    external_chain,
    service_chain,
)

CIDR = "10.244.0.0/16"
A, B = Endpoint("10.244.1.5", 8080, "default/a"), Endpoint("10.244.2.5", 8080, "default/b")


def sp(name: str = "web", *, eps: tuple[Endpoint, ...] = (A, B), node_port: int | None = None,
       affinity: float | None = None, proto: str = "TCP", port_name: str = "http") -> ServicePort:
    return ServicePort("default", name, port_name, "10.96.0.20", 80, proto, node_port=node_port,
                       affinity_seconds=affinity, endpoints=eps)


def table(*ports: ServicePort) -> dict[str, ServicePort]:
    return {p.key: p for p in ports}


def apply(nft: FakeNft, cmds: list[dict[str, Any]]) -> dict[str, Any]:
    asyncio.run(nft.apply("knet-node-1", cmds))
    return nft.tables[("knet-node-1", FAMILY, TABLE)]


def rules(t: dict[str, Any], chain: str) -> str:
    return json.dumps(t["chains"][chain]["rules"])


def test_chain_names_follow_upstream_hash_and_truncate() -> None:
    # upstream: "service-" + base32(sha256(name))[:8] + "-" + "ns/name/proto/portname"
    assert service_chain(sp()) == "service-SUSTUHLJ-default/web/tcp/http"
    assert endpoint_chain(sp(), "10.244.1.5", 8080).endswith("-default/web/tcp/http__10.244.1.5/8080")
    assert endpoint_chain(sp(), "10.244.1.5", 8080).startswith("endpoint-")
    long = ServicePort("n" * 63, "s" * 63, "p" * 63, "10.96.0.1", 1, "TCP",
                       endpoints=(Endpoint("10.244.1.1", 1, ""),))
    assert len(service_chain(long)) <= 256


def test_a_service_with_endpoints_is_a_service_chain_choosing_by_numgen() -> None:
    nft = FakeNft()
    t = apply(nft, compile_sync(table(sp()), cluster_cidr=CIDR, previous=None).commands)
    svc = rules(t, service_chain(sp()))
    assert '"numgen": {"mode": "random", "mod": 2' in svc
    assert endpoint_chain(sp(), A.ip, A.port) in svc and endpoint_chain(sp(), B.ip, B.port) in svc
    # masquerade traffic to the ClusterIP from outside the cluster CIDR
    assert '"!=", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": ' \
           '{"prefix": {"addr": "10.244.0.0", "len": 16}}' in svc
    ep = rules(t, endpoint_chain(sp(), A.ip, A.port))
    assert '"dnat": {"addr": "10.244.1.5", "port": 8080}' in ep
    assert '"right": "10.244.1.5"}}, {"jump": {"target": "mark-for-masquerade"}}' in ep  # hairpin
    elems = t["sets"]["service-ips"]["elem"]
    assert elems == [[{"concat": ["10.96.0.20", "tcp", 80]}, {"goto": {"target": service_chain(sp())}}]]
    assert t["sets"]["no-endpoint-services"]["elem"] == []
    for base in ("nat-prerouting", "nat-output", "nat-postrouting", "filter-input",
                 "filter-forward", "filter-output"):
        assert t["chains"][base]["spec"]["hook"]


def test_no_endpoints_rejects_and_nodeports_go_through_the_external_chain() -> None:
    nft = FakeNft()
    empty = sp("empty", eps=(), node_port=30081)
    web = sp(node_port=30080)
    t = apply(nft, compile_sync(table(empty, web), cluster_cidr=CIDR, previous=None).commands)
    assert t["sets"]["no-endpoint-services"]["elem"] == [
        [{"concat": ["10.96.0.20", "tcp", 80]}, {"goto": {"target": "reject-chain"}}]]
    assert t["sets"]["no-endpoint-nodeports"]["elem"] == [
        [{"concat": ["tcp", 30081]}, {"goto": {"target": "reject-chain"}}]]
    assert t["sets"]["service-nodeports"]["elem"] == [
        [{"concat": ["tcp", 30080]}, {"goto": {"target": external_chain(web)}}]]
    assert not any("empty" in c for c in t["chains"])              # no chains for it
    ext = rules(t, external_chain(web))
    assert "mark-for-masquerade" in ext and service_chain(web) in ext
    assert rules(t, "reject-chain") == '[[{"log": {"group": 19280}}, {"reject": null}]]'
    assert '"fib"' in rules(t, "services") and "@service-nodeports" in rules(t, "services")


def test_affinity_is_a_timed_set_per_endpoint_checked_before_numgen() -> None:
    nft = FakeNft()
    sticky = sp(affinity=10800.0)
    t = apply(nft, compile_sync(table(sticky), cluster_cidr=CIDR, previous=None).commands)
    name = affinity_set(sticky, A.ip, A.port)
    assert t["sets"][name]["spec"]["timeout"] == 10800
    assert t["sets"][name]["spec"]["flags"] == ["timeout"]
    svc = t["chains"][service_chain(sticky)]["rules"]
    assert json.dumps(svc[1]).count("@affinity-") == 1 and "goto" in json.dumps(svc[1])
    assert "numgen" in json.dumps(svc[-1])                       # numgen only after the sets
    ep = rules(t, endpoint_chain(sticky, A.ip, A.port))
    assert f'"op": "update", "elem": {{"payload": {{"protocol": "ip", "field": "saddr"}}}}, ' \
           f'"set": "@{name}"' in ep


def test_a_second_sync_keeps_affinity_sets_and_deletes_what_went() -> None:
    nft = FakeNft()
    first = compile_sync(table(sp(affinity=60.0)), cluster_cidr=CIDR, previous=None)
    apply(nft, first.commands)
    gone = affinity_set(sp(), B.ip, B.port)
    second = compile_sync(table(sp(eps=(A,), affinity=60.0)), cluster_cidr=CIDR,
                          previous=first.state)
    verbs = [(verb, kind, body.get("name")) for c in second.commands
             for verb, obj in c.items() for kind, body in obj.items()]
    assert ("delete", "table", TABLE) not in verbs                 # incremental, not remade
    assert ("add", "set", affinity_set(sp(), A.ip, A.port)) not in verbs   # kept with its IPs
    assert ("delete", "set", gone) in verbs
    assert ("delete", "chain", endpoint_chain(sp(), B.ip, B.port)) in verbs
    t = apply(nft, second.commands)
    assert gone not in t["sets"] and endpoint_chain(sp(), B.ip, B.port) not in t["chains"]
    assert '"mod": 1' in rules(t, service_chain(sp()))
    # a changed timeout makes the set anew; a service gone takes all its chains
    third = compile_sync(table(sp(eps=(A,), affinity=5.0)), cluster_cidr=CIDR,
                         previous=second.state)
    assert {"delete": {"set": {"family": FAMILY, "table": TABLE,
                               "name": affinity_set(sp(), A.ip, A.port)}}} in third.commands
    t = apply(nft, third.commands)
    last = compile_sync({}, cluster_cidr=CIDR, previous=third.state)
    t = apply(nft, last.commands)
    assert not any("/" in c for c in t["chains"]) and not any(s.startswith("affinity-")
                                                              for s in t["sets"])


def test_the_first_sync_of_a_process_replaces_a_left_over_table() -> None:
    cmds = compile_sync(table(sp()), cluster_cidr=CIDR, previous=None).commands
    assert cmds[:3] == [{"add": {"table": {"family": FAMILY, "name": TABLE,
                                           "comment": "rules for kube-proxy"}}},
                        {"delete": {"table": {"family": FAMILY, "name": TABLE}}},
                        {"add": {"table": {"family": FAMILY, "name": TABLE,
                                           "comment": "rules for kube-proxy"}}}]
    nft = FakeNft()
    apply(nft, [{"add": {"table": {"family": FAMILY, "name": TABLE}}},
                {"add": {"chain": {"family": FAMILY, "table": TABLE, "name": "stale"}}}])
    t = apply(nft, cmds)
    assert "stale" not in t["chains"]


def test_udp_services_dnat_udp() -> None:
    dns = ServicePort("kube-system", "kube-dns", "dns", "10.96.0.10", 53, "UDP",
                      endpoints=(Endpoint("10.244.1.9", 53, ""),))
    nft = FakeNft()
    t = apply(nft, compile_sync(table(dns), cluster_cidr=CIDR, previous=None).commands)
    assert "/udp/dns" in service_chain(dns)
    ep = rules(t, endpoint_chain(dns, "10.244.1.9", 53))
    assert '"right": "udp"}}, {"dnat"' in ep
    assert t["sets"]["service-ips"]["elem"][0][0] == {"concat": ["10.96.0.10", "udp", 53]}
