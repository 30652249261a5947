"""Node lifecycle with a fake clock: a node whose Lease stops renewing turns NotReady
(Ready=Unknown) and tainted unreachable after the grace period; its pods are evicted after
the eviction grace unless they tolerate the taint; a renewed Lease lifts the taints."""

from __future__ import annotations

from ctlharness import ControllerHarness
from nodefixtures import add_node, renew

from control.errors import NotFound


def pod(name: str, node: str, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}], **spec}}


async def tick(h: ControllerHarness, seconds: int, *, keep_alive: tuple[str, ...] = ()) -> None:
    for _ in range(seconds):
        await h.clock.advance(1)
        for name in keep_alive:
            await renew(h.client, h.clock, name)
        await h.settle(2)


async def pod_gone(h: ControllerHarness, name: str) -> bool:
    try:
        await h.client.get("pods", name, namespace="default")
    except NotFound:
        return True
    return False


def ready_status(node: dict) -> str:
    return [c for c in node["status"]["conditions"] if c["type"] == "Ready"][0]["status"]


async def test_stale_lease_marks_not_ready_and_evicts(harness: ControllerHarness) -> None:
    c, clock = harness.client, harness.clock
    await add_node(c, clock, "node-1")
    await add_node(c, clock, "node-2")
    await c.create("pods", pod("victim", "node-1"))
    await c.create("pods", pod("tolerant", "node-1", tolerations=[
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}]))
    await c.create("pods", pod("safe", "node-2"))
    await harness.start("nodelifecycle", node_monitor_grace=40, pod_eviction_grace=5)
    await tick(harness, 38, keep_alive=("node-2",))
    n1 = await c.get("nodes", "node-1")
    assert ready_status(n1) == "True" and not n1["spec"].get("taints")
    await tick(harness, 4, keep_alive=("node-2",))

    async def not_ready():
        n = await c.get("nodes", "node-1")
        return n if ready_status(n) == "Unknown" and n["spec"].get("taints") else None
    n1 = await harness.eventually(not_ready, what="node-1 NotReady")
    assert {(t["key"], t["effect"]) for t in n1["spec"]["taints"]} == {
        ("node.kubernetes.io/unreachable", "NoSchedule"),
        ("node.kubernetes.io/unreachable", "NoExecute")}
    ready = [x for x in n1["status"]["conditions"] if x["type"] == "Ready"][0]
    assert ready["reason"] == "NodeStatusUnknown"
    assert ready_status(await c.get("nodes", "node-2")) == "True"
    assert await c.get("pods", "victim", namespace="default")      # not yet: eviction grace
    await tick(harness, 6, keep_alive=("node-2",))

    await harness.eventually(lambda: pod_gone(harness, "victim"), what="victim evicted")
    assert await c.get("pods", "tolerant", namespace="default")
    assert await c.get("pods", "safe", namespace="default")
    reasons = {e["reason"] for e in (await c.list("events", namespace="default")).items}
    assert {"NodeNotReady", "TaintManagerEviction"} <= reasons
    # the kubelet comes back
    await renew(c, clock, "node-1")

    async def untainted():
        return not (await c.get("nodes", "node-1"))["spec"].get("taints")
    await tick(harness, 2, keep_alive=("node-1", "node-2"))
    await harness.eventually(untainted, what="taints lifted after renewal")


async def test_toleration_seconds_delays_eviction(harness: ControllerHarness) -> None:
    c, clock = harness.client, harness.clock
    await add_node(c, clock, "node-1")
    await c.create("pods", pod("slow", "node-1", tolerations=[
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 20}]))
    await harness.start("nodelifecycle", node_monitor_grace=10, pod_eviction_grace=2)
    await tick(harness, 12)
    await tick(harness, 10)
    assert await c.get("pods", "slow", namespace="default")
    await tick(harness, 12)

    await harness.eventually(lambda: pod_gone(harness, "slow"),
                             what="evicted after tolerationSeconds")


async def test_pods_of_a_deleted_node_are_collected(harness: ControllerHarness) -> None:
    c, clock = harness.client, harness.clock
    await add_node(c, clock, "node-1")
    await add_node(c, clock, "node-2")
    await c.create("pods", pod("stranded", "node-1"))
    await c.create("pods", pod("fine", "node-2"))
    await harness.start("nodelifecycle", node_monitor_grace=40, pod_eviction_grace=5)
    await c.delete("nodes", "node-1")
    await tick(harness, 3, keep_alive=("node-2",))
    assert await c.get("pods", "stranded", namespace="default")   # quarantine first
    await tick(harness, 4, keep_alive=("node-2",))
    await harness.eventually(lambda: pod_gone(harness, "stranded"), what="orphan collected")
    assert await c.get("pods", "fine", namespace="default")


async def test_network_unavailable_taints_the_node_no_schedule(harness: ControllerHarness) -> None:
    """TaintNodesByCondition: NetworkUnavailable=True (the overlay found the node's own
    annotations broken) adds node.kubernetes.io/network-unavailable:NoSchedule; False
    lifts it; other taints are kept."""
    c, clock = harness.client, harness.clock
    other = {"key": "dedicated", "value": "x", "effect": "NoSchedule"}
    node = await add_node(c, clock, "node-1", taints=[other])
    node["status"]["conditions"].append({"type": "NetworkUnavailable", "status": "True",
                                         "reason": "OverlayAnnotationInvalid"})
    await c.update("nodes", node, subresource="status")
    await harness.start("nodelifecycle")

    async def taints(want: int):
        n = await c.get("nodes", "node-1")
        got = n["spec"].get("taints") or []
        return got if len(got) == want else None
    got = await harness.eventually(lambda: taints(2), what="the network taint")
    assert {(t["key"], t["effect"]) for t in got} == {
        ("dedicated", "NoSchedule"), ("node.kubernetes.io/network-unavailable", "NoSchedule")}
    n = await c.get("nodes", "node-1")
    for cond in n["status"]["conditions"]:
        if cond["type"] == "NetworkUnavailable":
            cond["status"] = "False"
    await c.update("nodes", n, subresource="status")
    await renew(c, clock, "node-1")
    got = await harness.eventually(lambda: taints(1), what="the network taint lifted")
    assert got[0]["key"] == "dedicated"
