"""Namespace deletion end to end with the controllers: everything in it goes (through the
same cascade a user's delete takes), graceful pods hold it until finished, then it is gone."""

from __future__ import annotations

from ctlharness import ControllerHarness

from control.errors import NotFound


async def test_terminating_namespace_is_emptied_then_removed(harness: ControllerHarness) -> None:
    c = harness.client
    await c.create("namespaces", {"metadata": {"name": "lab"}})
    await harness.start("namespace", "replicaset", "garbagecollector")
    await c.create("replicasets", {
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "x"}]}}}},
        namespace="lab")
    await c.create("configmaps", {"metadata": {"name": "cfg"}, "data": {}}, namespace="lab")

    async def two():
        pods = await harness.pods("lab")
        return pods if len(pods) == 2 else None
    pods = await harness.eventually(two)
    await harness.mark_pod(pods[0], node="node-1")          # bound: graceful deletion
    await c.delete("namespaces", "lab")
    ns = await c.get("namespaces", "lab")
    assert ns["status"]["phase"] == "Terminating"

    async def only_terminating_pod_left():
        left = []
        for r in ("replicasets", "configmaps", "pods"):
            left += (await c.list(r, namespace="lab")).items
        return left if len(left) == 1 and left[0]["metadata"].get("deletionTimestamp") else None
    [pod] = await harness.eventually(only_terminating_pod_left, what="only the graceful pod")
    await c.delete("pods", pod["metadata"]["name"], namespace="lab", grace_period=0)  # kubelet

    async def gone():
        try:
            await c.get("namespaces", "lab")
        except NotFound:
            return True
        return False
    await harness.eventually(gone, what="namespace removed")
