"""The LoadBalancer controller and its pool: a LoadBalancer Service gets the lowest free pool
address in status.loadBalancer.ingress (and `kubectl get svc` shows it), a requested address
(spec.loadBalancerIP, MetalLB's annotation) is honoured, a second Service asking for a taken
address stays pending with MetalLB's Warning, an exhausted pool leaves Services pending until
an address comes back, addresses go back on delete and on a type change; the announcing node
is a Ready node (Local: one with a ready endpoint), named in an annotation and an Event; the
pool is rebuilt from the stored statuses at start."""

from __future__ import annotations

from typing import Any

import pytest
from ctlharness import ControllerHarness

from control.controllers.lbpool import AddressPool, PoolError, announcer
from control.controllers.loadbalancer import ANNOUNCE_ANNOTATION
from control.models.printers import service_cells

POOL = "172.18.255.0/30"   # two usable addresses: .1 and .2


def lb(name: str, **spec: Any) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": "LoadBalancer", "selector": {"app": name},
                     "ports": [{"port": 80, "targetPort": 8080}], **spec}}


async def _node(harness: ControllerHarness, name: str, ready: bool = True) -> None:
    node = await harness.client.create("nodes", {"metadata": {"name": name}})
    node["status"] = {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    await harness.client.update("nodes", node, subresource="status")


def ips(svc: dict) -> list[str]:
    return [i["ip"] for i in svc["status"].get("loadBalancer", {}).get("ingress") or []]


async def _ingress(harness: ControllerHarness, name: str, want: list[str]) -> dict:
    async def check() -> dict | None:
        svc = await harness.client.get("services", name, namespace="default")
        return svc if ips(svc) == want else None
    return await harness.eventually(check, what=f"{name} ingress {want}")


async def _events(harness: ControllerHarness, name: str) -> list[tuple[str, str, str]]:
    items = (await harness.client.list("events", namespace="default")).items
    return [(e["type"], e["reason"], e["message"]) for e in items
            if e["involvedObject"]["name"] == name]


def test_pool_rules() -> None:
    pool = AddressPool(POOL)
    assert pool.assign("default/a") == "172.18.255.1"
    assert pool.assign("default/a") == "172.18.255.1"            # stable
    with pytest.raises(PoolError, match="address also in use by default/a"):
        pool.assign("default/b", "172.18.255.1")
    with pytest.raises(PoolError, match="is not allowed in config"):
        pool.assign("default/b", "172.18.255.3")                   # the broadcast: never
    assert pool.assign("default/b") == "172.18.255.2"
    with pytest.raises(PoolError, match="no available IPs"):
        pool.assign("default/c")
    assert pool.release("default/a") == "172.18.255.1"
    assert pool.assign("default/c") == "172.18.255.1"
    assert not pool.mark("default/d", "172.18.255.1")             # held by c
    with pytest.raises(ValueError, match="not an IPv4 network"):
        AddressPool("172.18.255.1/24")


def test_announcer_is_one_node_and_spreads() -> None:
    nodes = ["node-1", "node-2", "node-3"]
    picks = {announcer(f"172.18.255.{i}", nodes) for i in range(1, 30)}
    assert picks == set(nodes)                                     # addresses spread
    assert announcer("172.18.255.7", nodes) == announcer("172.18.255.7", reversed(nodes))
    assert announcer("172.18.255.7", []) is None


async def test_assigns_requests_conflicts_and_releases(harness: ControllerHarness) -> None:
    c = harness.client
    await _node(harness, "node-1")
    await harness.start("loadbalancer", lb_pool=POOL)
    await c.create("services", lb("a"))
    a = await _ingress(harness, "a", ["172.18.255.1"])
    assert a["status"]["loadBalancer"]["ingress"][0]["ipMode"] == "VIP"
    assert service_cells(a, harness.clock.now())[3] == "172.18.255.1"   # EXTERNAL-IP
    await harness.eventually(lambda: _events(harness, "a"), what="events")
    assert ("Normal", "IPAllocated", 'Assigned IP ["172.18.255.1"]') in \
        await _events(harness, "a")

    await c.create("services", lb("b", loadBalancerIP="172.18.255.1"))
    want = ("Warning", "AllocationFailed", ('Failed to allocate IP for "default/b": can\'t '
            'change sharing key for "default/b", address also in use by default/a'))

    async def warned() -> bool:
        return want in await _events(harness, "b")
    await harness.eventually(warned, what="b's AllocationFailed")
    b = await c.get("services", "b", namespace="default")
    assert ips(b) == [] and service_cells(b, harness.clock.now())[3] == "<pending>"

    await c.create("services", lb("m") | {"metadata": {"name": "m", "annotations": {
        "metallb.universe.tf/loadBalancerIPs": "172.18.255.2"}}})
    await _ingress(harness, "m", ["172.18.255.2"])

    await c.delete("services", "a", namespace="default")          # a's address goes to b
    await _ingress(harness, "b", ["172.18.255.1"])

    await c.patch("services", "m", {"spec": {"type": "ClusterIP", "ports": [
        {"port": 80, "targetPort": 8080}]}}, patch_type="merge", namespace="default")
    await c.create("services", lb("n"))
    await _ingress(harness, "n", ["172.18.255.2"])                  # m's address came back
    m = await c.get("services", "m", namespace="default")
    assert ips(m) == [] and ANNOUNCE_ANNOTATION not in (m["metadata"].get("annotations") or {})


async def test_pool_exhausted_stays_pending(harness: ControllerHarness) -> None:
    c = harness.client
    await harness.start("loadbalancer", lb_pool=POOL)
    for name in ("x", "y", "z"):
        await c.create("services", lb(name))
    await _ingress(harness, "x", ["172.18.255.1"])
    await _ingress(harness, "y", ["172.18.255.2"])
    want = ("Warning", "AllocationFailed",
            'Failed to allocate IP for "default/z": no available IPs')

    async def warned() -> bool:
        return want in await _events(harness, "z")
    await harness.eventually(warned, what="z pending with an Event")
    await c.delete("services", "x", namespace="default")
    await _ingress(harness, "z", ["172.18.255.1"])


async def test_other_class_is_left_alone(harness: ControllerHarness) -> None:
    c = harness.client
    await harness.start("loadbalancer", lb_pool=POOL)
    await c.create("services", lb("theirs", loadBalancerClass="example.com/lb"))
    await c.create("services", lb("ours"))
    await _ingress(harness, "ours", ["172.18.255.1"])
    await harness.settle()
    assert ips(await c.get("services", "theirs", namespace="default")) == []


async def test_announcing_node(harness: ControllerHarness) -> None:
    c = harness.client
    for name in ("node-1", "node-2", "node-3"):
        await _node(harness, name)
    await harness.start("loadbalancer", lb_pool="172.18.255.0/24")
    await c.create("services", lb("web"))
    await _ingress(harness, "web", ["172.18.255.1"])
    expect = announcer("172.18.255.1", ["node-1", "node-2", "node-3"])

    async def announced(name: str, node: str | None) -> bool:
        svc = await c.get("services", name, namespace="default")
        return (svc["metadata"].get("annotations") or {}).get(ANNOUNCE_ANNOTATION) == node
    await harness.eventually(lambda: announced("web", expect), what="announced")
    message = f'announcing from node "{expect}" with protocol "layer2"'
    assert ("Normal", "nodeAssigned", message) in await _events(harness, "web")

    # the announcing node goes NotReady: another node takes the address over
    node = await c.get("nodes", str(expect))
    node["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    await c.update("nodes", node, subresource="status")
    rest = [n for n in ("node-1", "node-2", "node-3") if n != expect]
    await harness.eventually(lambda: announced("web", announcer("172.18.255.1", rest)),
                             what="failover")

    # Local: only a node with a ready endpoint announces; none -> not announced
    await c.create("services", lb("local", externalTrafficPolicy="Local"))
    await _ingress(harness, "local", ["172.18.255.2"])
    await harness.eventually(lambda: announced("local", None), what="no local endpoint")
    await c.create("endpointslices", {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "local-1", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "local"}},
        "addressType": "IPv4", "ports": [{"port": 8080, "protocol": "TCP", "name": ""}],
        "endpoints": [{"addresses": ["10.244.3.5"], "nodeName": "node-3",
                       "conditions": {"ready": True}}]}, namespace="default")
    want = "node-3" if expect != "node-3" else None
    await harness.eventually(lambda: announced("local", want), what="local endpoint's node")


async def test_pool_rebuilt_from_statuses(harness: ControllerHarness) -> None:
    c = harness.client
    await c.create("services", lb("old"))
    svc = await c.get("services", "old", namespace="default")
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": "172.18.255.1"}]}}
    await c.update("services", svc, subresource="status")          # as a previous run left it
    await harness.start("loadbalancer", lb_pool=POOL)
    await c.create("services", lb("new"))
    await _ingress(harness, "new", ["172.18.255.2"])
    assert ips(await c.get("services", "old", namespace="default")) == ["172.18.255.1"]


def test_underlay_pool_check() -> None:
    from control.controllers.lbpool import check_underlay_pool
    assert check_underlay_pool("172.18.200.0/28") == "172.18.200.0/28"
    for bad in ("172.18.0.0/24", "10.0.0.0/24", "172.18.0.128/25", "nope"):
        with pytest.raises(ValueError):
            check_underlay_pool(bad)
