"""NoExecute taints evict the pods that do not tolerate them: at once, or after their
tolerationSeconds (fake clock); tolerating pods stay; other nodes are untouched."""

from __future__ import annotations

from ctlharness import ControllerHarness
from nodefixtures import add_node

from control.errors import NotFound


def pod(name: str, node: str, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}], **spec}}


async def terminating(h: ControllerHarness, name: str) -> bool:
    try:
        p = await h.client.get("pods", name, namespace="default")
    except NotFound:
        return True
    return bool(p["metadata"].get("deletionTimestamp"))


async def test_no_execute_taint_evicts_intolerant_pods(harness: ControllerHarness) -> None:
    c, clock = harness.client, harness.clock
    await add_node(c, clock, "node-1")
    await add_node(c, clock, "node-2")
    await c.create("pods", pod("plain", "node-1"))
    await c.create("pods", pod("forever", "node-1", tolerations=[
        {"key": "maintenance", "operator": "Exists", "effect": "NoExecute"}]))
    await c.create("pods", pod("brief", "node-1", tolerations=[
        {"key": "maintenance", "operator": "Equal", "value": "now", "effect": "NoExecute",
         "tolerationSeconds": 10}]))
    await c.create("pods", pod("other-node", "node-2"))
    await harness.start("tainteviction")
    await c.patch("nodes", "node-1", {"spec": {"taints": [
        {"key": "maintenance", "value": "now", "effect": "NoExecute"}]}})
    await harness.eventually(lambda: terminating(harness, "plain"), what="plain evicted")
    await harness.settle()
    assert not await terminating(harness, "brief")
    await harness.clock.advance(9)
    await harness.settle()
    assert not await terminating(harness, "brief")
    await harness.clock.advance(2)
    await harness.eventually(lambda: terminating(harness, "brief"),
                             what="brief evicted after tolerationSeconds")
    assert not await terminating(harness, "forever")
    assert not await terminating(harness, "other-node")
    evs = [e for e in (await c.list("events", namespace="default")).items
           if e["reason"] == "TaintManagerEviction"]
    assert sorted(e["involvedObject"]["name"] for e in evs) == ["brief", "plain"]
