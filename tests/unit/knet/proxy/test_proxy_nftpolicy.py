"""The nftables mode's traffic from outside and its traffic policies, without root: Services
as an informer hands them (wire dicts), folded by config.py/topology.py exactly as for the
userspace mode, compiled (knet.proxy.nftcompile) and applied to FakeNft; what each map sends
where, which endpoints each policy chain holds, the masquerade decisions of
externalTrafficPolicy, LoadBalancer addresses and externalIPs, loadBalancerSourceRanges, the
service-proxy-name label; and the NftProxier serving healthCheckNodePort and announcing its
LoadBalancer addresses. (The kernel runs the same batches in
tests/integration/knet/cluster/test_loadbalancer_e2e.py and test_service_upstream_e2e.py.)"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

from proxy_testkit import endpoint_slice, free_port, loopback_net, service

from knet.dataplane.hostroutes import FakeHostRoutes
from knet.dataplane.nflog import Logged
from knet.dataplane.nft import FakeNft
from knet.proxy.config import build_table
from knet.proxy.ctflows import ConntrackFlows
from knet.proxy.external import ExternalView
from knet.proxy.flows import DROPPED, FlowRing
from knet.proxy.nftcompile import (
    FAMILY,
    TABLE,
    compile_sync,
    endpoint_chain,
    external_chain,
    firewall_chain,
    local_chain,
    service_chain,
)
from knet.proxy.nftproxier import NftProxier

CIDR = "10.244.0.0/16"
NODE_IP = "172.18.0.2"
HERE, THERE = ("10.244.1.5", "here"), ("10.244.2.5", "there")


def svc(name: str = "web", *, node_port: int | None = None, lb_ip: str | None = None,
        labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    port: dict[str, Any] = {"name": "http", "port": 80, "targetPort": 8080}
    if node_port:
        port["nodePort"] = node_port
    s = service(name, "10.96.0.20" if name == "web" else "10.96.0.21", [port], **spec)
    if lb_ip:
        s["spec"]["type"] = "LoadBalancer"
        s["status"] = {"loadBalancer": {"ingress": [{"ip": lb_ip}]}}
    elif node_port:
        s["spec"]["type"] = "NodePort"
    if labels:
        s["metadata"]["labels"] = labels
    return s


def slices(name: str = "web", eps: tuple[tuple[str, str], ...] = (HERE, THERE)) -> dict[str, Any]:
    sl = endpoint_slice(name, [{"name": "http", "port": 8080}], list(eps))
    for ep in sl["endpoints"]:
        ep["nodeName"] = "node-1" if ep["targetRef"]["name"] == "here" else "node-2"
    return sl


def compiled(*services: dict[str, Any], eps: tuple[tuple[str, str], ...] = (HERE, THERE),
             node: str = "node-1") -> dict[str, Any]:
    """Compile as node `node`'s NftProxier does, apply to FakeNft, return the table."""
    by_key = {f"default/{s['metadata']['name']}": s for s in services}
    sls = [slices(s["metadata"]["name"], eps) for s in services]
    table = build_table(by_key, {k: [sl] for k, sl in zip(by_key, sls, strict=True)}, node)
    view = ExternalView(node, [NODE_IP])
    view.update(by_key, sls)
    nft = FakeNft()
    cmds = compile_sync(table, cluster_cidr=CIDR, previous=None, externals=view.by_service,
                        node_ips=[NODE_IP]).commands
    asyncio.run(nft.apply("knet-node-1", cmds))
    return nft.tables[("knet-node-1", FAMILY, TABLE)]


def rules(t: dict[str, Any], chain: str) -> str:
    return json.dumps(t["chains"][chain]["rules"])


def elems(t: dict[str, Any], name: str) -> dict[str, str]:
    """'ip . proto . port' -> verdict target of a verdict map."""
    out = {}
    for key, verdict in t["sets"][name]["elem"]:
        target = verdict["goto"]["target"] if "goto" in verdict else next(iter(verdict))
        out[" . ".join(str(k) for k in key["concat"])] = target
    return out


def sp_of(s: dict[str, Any], node: str = "node-1") -> Any:
    name = s["metadata"]["name"]
    (sp,) = build_table({f"default/{name}": s}, {f"default/{name}": [slices(name)]},
                        node).values()
    return sp


def test_internal_traffic_policy_local_uses_a_local_chain_with_this_nodes_endpoints() -> None:
    s = svc(internalTrafficPolicy="Local")
    t = compiled(s)
    sp = sp_of(s)
    assert elems(t, "service-ips") == {"10.96.0.20 . tcp . 80": local_chain(sp)}
    chain = rules(t, local_chain(sp))
    assert endpoint_chain(sp, *HERE[:1], 8080) in chain and THERE[0] not in chain
    assert '"mod": 1' in chain
    assert service_chain(sp) not in t["chains"]


def test_internal_local_without_a_local_endpoint_drops_and_without_any_rejects() -> None:
    t = compiled(svc(internalTrafficPolicy="Local"), node="node-3")   # endpoints elsewhere
    assert elems(t, "no-endpoint-services") == {"10.96.0.20 . tcp . 80": "drop-chain"}
    assert elems(t, "service-ips") == {}
    assert '"prefix": "knet-drop"' in rules(t, "drop-chain") and '"drop"' in rules(t, "drop-chain")
    t = compiled(svc(internalTrafficPolicy="Local"), eps=())
    assert elems(t, "no-endpoint-services") == {"10.96.0.20 . tcp . 80": "reject-chain"}


def test_external_policy_cluster_masquerades_external_traffic_to_every_endpoint() -> None:
    s = svc(node_port=30080, lb_ip="172.18.255.1", externalIPs=["172.18.0.2"])
    t, sp = compiled(s), sp_of(s)
    ext = external_chain(sp)
    assert elems(t, "service-ips") == {"10.96.0.20 . tcp . 80": service_chain(sp),
                                       "172.18.0.2 . tcp . 80": ext,
                                       "172.18.255.1 . tcp . 80": ext}
    assert elems(t, "service-nodeports") == {"tcp . 30080": ext}
    assert rules(t, ext) == json.dumps([
        [{"jump": {"target": "mark-for-masquerade"}}],
        [{"goto": {"target": service_chain(sp)}}]])
    assert '"mod": 2' in rules(t, service_chain(sp))
    assert elems(t, "firewall-ips") == {}


def test_external_policy_local_keeps_the_client_and_serves_local_endpoints_only() -> None:
    s = svc(node_port=30080, lb_ip="172.18.255.1", externalTrafficPolicy="Local")
    t, sp = compiled(s), sp_of(s)
    ext = rules(t, external_chain(sp))
    # upstream's rules, in order: pods short-circuit to the cluster chain (no masquerade),
    # the node itself is masqueraded, everyone else keeps the address and goes local
    got = [r[-1] for r in t["chains"][external_chain(sp)]["rules"]]
    assert got == [{"goto": {"target": service_chain(sp)}},          # pods: short-circuit
                   {"jump": {"target": "mark-for-masquerade"}},     # the node: masquerade
                   {"goto": {"target": service_chain(sp)}},         # ... and short-circuit
                   {"goto": {"target": local_chain(sp)}}]           # outside: local, unmasked
    assert '"prefix": {"addr": "10.244.0.0", "len": 16}}}}, {"goto": {"target": "' \
           + service_chain(sp) in ext
    assert '"flags": ["saddr"]' in ext
    local = rules(t, local_chain(sp))
    assert HERE[0] in local and THERE[0] not in local and "mark-for-masquerade" not in \
        json.dumps(t["chains"][local_chain(sp)]["rules"][:-1])
    assert '"mod": 2' in rules(t, service_chain(sp))                  # ClusterIP: everyone


def test_external_local_without_a_local_endpoint_drops_outsiders_only() -> None:
    s = svc(node_port=30080, lb_ip="172.18.255.1", externalTrafficPolicy="Local")
    t, sp = compiled(s, eps=(THERE,)), sp_of(s)
    ext = external_chain(sp)
    assert elems(t, "service-ips")["172.18.255.1 . tcp . 80"] == ext   # pods short-circuit
    assert elems(t, "service-nodeports") == {"tcp . 30080": ext}
    assert elems(t, "no-endpoint-services") == {"172.18.255.1 . tcp . 80": "drop-chain"}
    assert elems(t, "no-endpoint-nodeports") == {"tcp . 30080": "drop-chain"}
    assert local_chain(sp) not in t["chains"]
    assert "local-" not in rules(t, ext)


def test_a_service_without_endpoints_rejects_on_every_address() -> None:
    t = compiled(svc(node_port=30080, lb_ip="172.18.255.1", externalIPs=["172.18.0.9"]), eps=())
    assert elems(t, "no-endpoint-services") == {"10.96.0.20 . tcp . 80": "reject-chain",
                                                "172.18.0.9 . tcp . 80": "reject-chain",
                                                "172.18.255.1 . tcp . 80": "reject-chain"}
    assert elems(t, "no-endpoint-nodeports") == {"tcp . 30080": "reject-chain"}
    assert elems(t, "service-ips") == {} and not any(c.startswith("external-")
                                                     for c in t["chains"])


def test_source_ranges_are_a_firewall_chain_checked_before_dnat() -> None:
    s = svc(lb_ip="172.18.255.1", node_port=30080, loadBalancerSourceRanges=["10.244.0.0/16"])
    t, sp = compiled(s), sp_of(s)
    assert elems(t, "firewall-ips") == {"172.18.255.1 . tcp . 80": firewall_chain(sp)}
    assert rules(t, firewall_chain(sp)) == json.dumps([[
        {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                   "right": {"set": [{"prefix": {"addr": "10.244.0.0", "len": 16}}]}}},
        {"drop": None}]])
    assert "@firewall-ips" in rules(t, "firewall-check")
    assert t["chains"]["filter-prerouting"]["spec"]["prio"] == -110   # before DNAT (-100)
    assert "firewall-check" in rules(t, "filter-prerouting")
    # a range holding the node's address lets the node reach its own LoadBalancer address
    s = svc(lb_ip="172.18.255.1", loadBalancerSourceRanges=["172.18.0.0/24"])
    fw = rules(compiled(s), firewall_chain(sp_of(s)))
    assert '"172.18.255.1"' in fw


def test_the_service_proxy_name_label_leaves_the_service_alone() -> None:
    t = compiled(svc(node_port=30080, lb_ip="172.18.255.1",
                     labels={"service.kubernetes.io/service-proxy-name": "foo-bar"}))
    for name in ("service-ips", "service-nodeports", "no-endpoint-services", "cluster-ips"):
        assert t["sets"][name]["elem"] == []
    assert not any("/web/" in c for c in t["chains"])


def test_a_taken_address_is_programmed_once_and_the_batch_still_applies() -> None:
    one = svc("web", externalIPs=["172.18.0.2"])
    two = svc("other", externalIPs=["172.18.0.2"])
    t = compiled(one, two)
    got = elems(t, "service-ips")
    assert got["172.18.0.2 . tcp . 80"] == external_chain(sp_of(two))   # sorted: "other" first
    assert len(got) == 3


def test_a_dropped_packet_is_a_dropped_record() -> None:
    s = svc(internalTrafficPolicy="Local")
    ring = FlowRing()
    flows = ConntrackFlows("node-3", ring)
    flows.set_table({sp_of(s, "node-3").key: sp_of(s, "node-3")})
    flows.on_refused(Logged(0.0, "knet-drop", "tcp", "10.244.2.9", "10.96.0.20", 40000, 80))
    (rec,) = ring.records()
    assert rec.verdict == DROPPED and "no local endpoints on node-3" in rec.error


def _get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_the_nft_proxier_serves_health_checks_and_announces_its_addresses() -> None:
    net = loopback_net()
    node_ip = f"{net}100"
    hc = free_port(node_ip)
    host: dict[str, str] = {}

    async def run() -> None:
        nft = FakeNft()
        p = NftProxier("node-1", nft=nft, netns=None, node_ips=[node_ip], conntrack=False,
                       delay=0.01, routes=FakeHostRoutes("node-1", host))
        s = svc(node_port=30080, lb_ip="172.18.255.1", externalTrafficPolicy="Local",
                healthCheckNodePort=hc)
        s["metadata"]["annotations"] = {"lb.knet.dev/announced-by": "node-1"}
        p.on_service_add(s)
        p.on_endpointslice_add(slices())
        p.on_service_synced()
        p.on_endpointslice_synced()
        await asyncio.sleep(0.05)
        await p.wait_applied()
        try:
            assert host == {"172.18.255.1": node_ip}
            status, body = await asyncio.to_thread(_get, f"http://{node_ip}:{hc}/healthz")
            assert (status, body["localEndpoints"]) == (200, 1)
            p.on_endpointslice_update(slices(), slices(eps=(THERE,)))
            await asyncio.sleep(0.05)
            await p.wait_applied()
            status, body = await asyncio.to_thread(_get, f"http://{node_ip}:{hc}/healthz")
            assert (status, body["localEndpoints"]) == (503, 0)
        finally:
            await p.stop()
        assert host == {}                                      # withdrawn at stop

    asyncio.run(run())


def test_flows_name_connections_to_a_load_balancer_address() -> None:
    from knet.dataplane.conntrack import IPS_DST_NAT, CtEvent

    s = svc(node_port=30080, lb_ip="172.18.255.1", externalTrafficPolicy="Local")
    sp = sp_of(s)
    view = ExternalView("node-1", [NODE_IP])
    view.update({"default/web": s}, [slices()])
    ring = FlowRing()
    flows = ConntrackFlows("node-1", ring, node_ips=[NODE_IP])
    flows.set_table({sp.key: sp}, view.addresses)
    flows.on_event(CtEvent("new", 1, 6, "172.18.0.1", 40000, "172.18.255.1", 80, HERE[0], 8080,
                           "172.18.0.1", IPS_DST_NAT, "SYN_SENT"))
    (rec,) = ring.records()
    assert (rec.service, rec.endpoint_pod, rec.client_ip) == ("default/web", "default/here",
                                                              "172.18.0.1")
    assert "numgen random mod 1" in rec.reason            # the Local set: this node's one
