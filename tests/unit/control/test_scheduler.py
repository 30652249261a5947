"""The scheduler on the real object layer: spreading an owner's replicas, nodeSelector,
taints/tolerations, resource requests, cordoned and NotReady nodes, the Unschedulable
condition and FailedScheduling event, and the retry when nodes change."""

from __future__ import annotations

import pytest
from ctlharness import ControllerHarness
from nodefixtures import add_node

from control.scheduler import parse_quantity, pod_requests


def pod(name: str, **spec) -> dict:
    resources = spec.pop("resources", None)
    c = {"name": "c", "image": "x"}
    if resources:
        c["resources"] = resources
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [c], **spec}}


async def node_of(h: ControllerHarness, name: str) -> str | None:
    return (await h.client.get("pods", name, namespace="default"))["spec"].get("nodeName")


def test_quantities() -> None:
    assert parse_quantity("500m") == 0.5 and parse_quantity("2") == 2
    assert parse_quantity("128Mi") == 128 * 2**20 and parse_quantity("1G") == 1e9
    with pytest.raises(ValueError):
        parse_quantity("lots")
    p = pod("x", resources={"requests": {"cpu": "250m", "memory": "64Mi"}})
    assert pod_requests(p) == {"cpu": 0.25, "memory": 64 * 2**20}


async def test_spreads_replicas_of_one_owner(harness: ControllerHarness) -> None:
    c, clock = harness.client, harness.clock
    await add_node(c, clock, "node-1")
    await add_node(c, clock, "node-2")
    await harness.start("scheduler", "replicaset")
    await c.create("replicasets", {
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "x"}]}}}})

    async def all_bound():
        pods = await harness.pods()
        nodes = [p["spec"].get("nodeName") for p in pods]
        return nodes if len(nodes) == 4 and all(nodes) else None
    nodes = await harness.eventually(all_bound, what="4 pods bound")
    assert sorted(nodes) == ["node-1", "node-1", "node-2", "node-2"]
    evs = [e for e in (await c.list("events", namespace="default")).items
           if e["reason"] == "Scheduled"]
    assert len(evs) == 4
    assert evs[0]["message"].startswith("Successfully assigned default/web-")
    assert evs[0]["source"]["component"] == "default-scheduler"


async def test_unschedulable_reports_why_then_retries(harness: ControllerHarness) -> None:
    c, clock = harness.client, harness.clock
    await add_node(c, clock, "node-1", labels={"disk": "hdd"})
    await add_node(c, clock, "node-2", labels={"disk": "ssd"},
                   taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
    await harness.start("scheduler")
    await c.create("pods", pod("p", nodeSelector={"disk": "ssd"}))
    want = ("0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
            "1 node(s) had untolerated taint {dedicated: db}.")

    async def condition():
        p = await c.get("pods", "p", namespace="default")
        conds = [x for x in p["status"].get("conditions") or [] if x["type"] == "PodScheduled"]
        return conds[0] if conds else None
    cond = await harness.eventually(condition, what="PodScheduled condition")
    assert (cond["status"], cond["reason"], cond["message"]) == ("False", "Unschedulable", want)
    evs = [e for e in (await c.list("events", namespace="default")).items
           if e["reason"] == "FailedScheduling"]
    assert evs and evs[0]["type"] == "Warning" and evs[0]["message"] == want
    assert await node_of(harness, "p") is None
    # the taint is removed: the pod is retried and lands on node-2
    await c.patch("nodes", "node-2", {"spec": {"taints": None}})
    assert await harness.eventually(lambda: _on(harness, "p", "node-2"), what="retry binds p")


async def _on(h: ControllerHarness, name: str, node: str) -> bool:
    return await node_of(h, name) == node


async def test_toleration_allows_tainted_node(harness: ControllerHarness) -> None:
    c, clock = harness.client, harness.clock
    await add_node(c, clock, "node-1", taints=[{"key": "dedicated", "value": "db",
                                                "effect": "NoSchedule"}])
    await harness.start("scheduler")
    await c.create("pods", pod("p", tolerations=[
        {"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]))
    assert await harness.eventually(lambda: _on(harness, "p", "node-1"))


async def test_resource_requests_against_allocatable(harness: ControllerHarness) -> None:
    c, clock = harness.client, harness.clock
    await add_node(c, clock, "node-1", cpu="1", memory="1Gi")
    await harness.start("scheduler")
    big = {"requests": {"cpu": "600m"}}
    await c.create("pods", pod("a", resources=big))
    assert await harness.eventually(lambda: _on(harness, "a", "node-1"))
    await c.create("pods", pod("b", resources=big))

    async def message():
        p = await c.get("pods", "b", namespace="default")
        conds = [x for x in p["status"].get("conditions") or [] if x["type"] == "PodScheduled"]
        return conds[0]["message"] if conds else None
    msg = await harness.eventually(message)
    assert msg == "0/1 nodes are available: 1 Insufficient cpu."
    await c.delete("pods", "a", namespace="default", grace_period=0)
    assert await harness.eventually(lambda: _on(harness, "b", "node-1"),
                                    what="b bound once a is gone")


async def test_cordoned_and_not_ready_nodes_are_skipped(harness: ControllerHarness) -> None:
    c, clock = harness.client, harness.clock
    await add_node(c, clock, "node-1")
    await add_node(c, clock, "node-2", ready=False)
    await add_node(c, clock, "node-3")
    await c.patch("nodes", "node-1", {"spec": {"unschedulable": True}})
    await harness.start("scheduler")
    for i in range(3):
        await c.create("pods", pod(f"p{i}"))
    for i in range(3):
        assert await harness.eventually(lambda i=i: _on(harness, f"p{i}", "node-3"))


async def test_other_scheduler_name_is_ignored(harness: ControllerHarness) -> None:
    c, clock = harness.client, harness.clock
    await add_node(c, clock, "node-1")
    await harness.start("scheduler")
    await c.create("pods", pod("mine", schedulerName="my-scheduler"))
    await c.create("pods", pod("ours"))
    assert await harness.eventually(lambda: _on(harness, "ours", "node-1"))
    assert await node_of(harness, "mine") is None


async def test_host_ports_in_use_keep_a_pod_off_the_node(harness: ControllerHarness) -> None:
    """kube-scheduler's NodePorts filter: two hostNetwork pods wanting TCP 8080 never share
    a node; the second waits with upstream's reason until the first is gone."""
    c, clock = harness.client, harness.clock
    await add_node(c, clock, "node-1")
    await harness.start("scheduler")
    ports = [{"name": "c", "image": "x", "ports": [{"containerPort": 8080}]}]
    await c.create("pods", pod("a", hostNetwork=True, containers=ports))
    assert await harness.eventually(lambda: _on(harness, "a", "node-1"))
    await c.create("pods", pod("b", hostNetwork=True, containers=ports))

    async def message():
        p = await c.get("pods", "b", namespace="default")
        conds = [x for x in p["status"].get("conditions") or [] if x["type"] == "PodScheduled"]
        return conds[0]["message"] if conds else None
    msg = await harness.eventually(message)
    assert msg == ("0/1 nodes are available: 1 node(s) didn't have free ports for the "
                   "requested pod ports.")
    await c.delete("pods", "a", namespace="default", grace_period=0)
    assert await harness.eventually(lambda: _on(harness, "b", "node-1"),
                                    what="b bound once a is gone")
