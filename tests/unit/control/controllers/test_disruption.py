"""PodDisruptionBudget status from the disruption controller, and the Eviction API spending
it, on the real object layer: minAvailable, maxUnavailable and percentages against the
controller's replicas, DisruptionAllowed, 429 while the budget is spent, not-ready pods,
the DisruptionTarget condition, more than one budget."""

from __future__ import annotations

import pytest
from ctlharness import ControllerHarness

from control.api.eviction import MESSAGE, evict
from control.api.objects import ObjectService
from control.errors import Internal, TooManyRequests


def rs(replicas: int = 3) -> dict:
    labels = {"app": "web"}
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "containers": [{"name": "c", "image": "knet/whoami"}]}}}}


def pdb(name: str = "web", **spec) -> dict:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec}}


async def _ready_pods(h: ControllerHarness, n: int, ready: int | None = None) -> list[dict]:
    async def check():
        pods = await h.pods(selector="app=web")
        return pods if len(pods) == n else None
    pods = await h.eventually(check, what=f"{n} pods")
    for i, p in enumerate(pods):
        await h.mark_pod(p, node="node-1", ready=ready is None or i < ready)
    return pods


async def _status(h: ControllerHarness, **want) -> dict:
    async def check():
        st = (await h.client.get("poddisruptionbudgets", "web", namespace="default")).get(
            "status") or {}
        return st if all(st.get(k) == v for k, v in want.items()) else None
    return await h.eventually(check, what=f"pdb status {want}")


async def test_min_available_status_and_eviction(harness: ControllerHarness,
                                                 objects: ObjectService) -> None:
    await harness.start("replicaset", "disruption")
    await harness.client.create("replicasets", rs(3))
    pods = await _ready_pods(harness, 3)
    await harness.client.create("poddisruptionbudgets", pdb(minAvailable=2),
                                namespace="default")
    st = await _status(harness, currentHealthy=3, disruptionsAllowed=1)
    assert st["desiredHealthy"] == 2 and st["expectedPods"] == 3
    assert st["conditions"][0]["type"] == "DisruptionAllowed"
    assert st["conditions"][0]["status"] == "True"
    assert st["conditions"][0]["reason"] == "SufficientPods"
    first = pods[0]["metadata"]["name"]
    out = await evict(objects, namespace="default", name=first, body={})
    assert out["status"] == "Success"
    gone = await harness.client.get("pods", first, namespace="default")
    assert gone["metadata"].get("deletionTimestamp")
    assert {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}.items() \
        <= next(c for c in gone["status"]["conditions"] if c["type"] == "DisruptionTarget").items()
    with pytest.raises(TooManyRequests) as err:
        await evict(objects, namespace="default", name=pods[1]["metadata"]["name"], body={})
    assert err.value.message == MESSAGE == \
        "Cannot evict pod as it would violate the pod's disruption budget."
    assert err.value.code == 429
    assert err.value.causes[0].reason == "DisruptionBudget"
    assert "The disruption budget web needs 2 healthy pods and has" in err.value.causes[0].message
    st = await _status(harness, disruptionsAllowed=0)
    assert st["conditions"][0]["status"] == "False"
    assert st["conditions"][0]["reason"] == "InsufficientPods"
    # the ReplicaSet's replacement becomes Ready: the budget allows one again
    await harness.client.delete("pods", first, namespace="default", grace_period=0)

    async def replacement():
        ps = [p for p in await harness.pods(selector="app=web")
              if p["metadata"]["name"] not in {q["metadata"]["name"] for q in pods}]
        return ps[0] if ps else None
    await harness.mark_pod(await harness.eventually(replacement, what="replacement"),
                           node="node-1")
    await _status(harness, currentHealthy=3, disruptionsAllowed=1)
    await evict(objects, namespace="default", name=pods[1]["metadata"]["name"], body={})


async def test_max_unavailable_and_percentages(harness: ControllerHarness) -> None:
    await harness.start("replicaset", "disruption")
    await harness.client.create("replicasets", rs(4))
    await _ready_pods(harness, 4, ready=3)
    await harness.client.create("poddisruptionbudgets", pdb(maxUnavailable="50%"),
                                namespace="default")
    st = await _status(harness, expectedPods=4, desiredHealthy=2)
    assert st["currentHealthy"] == 3 and st["disruptionsAllowed"] == 1
    await harness.client.patch("poddisruptionbudgets", "web",
                               {"spec": {"maxUnavailable": None, "minAvailable": "80%"}},
                               namespace="default")
    st = await _status(harness, desiredHealthy=4, observedGeneration=2)
    assert st["disruptionsAllowed"] == 0


async def test_pod_without_controller_fails_safe(harness: ControllerHarness) -> None:
    await harness.start("disruption")
    await harness.client.create("pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "solo", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "knet/whoami"}]}}, namespace="default")
    await harness.client.create("poddisruptionbudgets", pdb(maxUnavailable=1),
                                namespace="default")
    st = await _status(harness, disruptionsAllowed=0, observedGeneration=1)
    assert st["conditions"][0]["reason"] == "SyncFailed"
    assert "found no controllers for pod" in st["conditions"][0]["message"]


async def test_unready_pod_and_two_budgets(harness: ControllerHarness,
                                          objects: ObjectService) -> None:
    await harness.start("replicaset", "disruption")
    await harness.client.create("replicasets", rs(3))
    pods = await _ready_pods(harness, 3, ready=2)
    await harness.client.create("poddisruptionbudgets", pdb(minAvailable=2),
                                namespace="default")
    await _status(harness, currentHealthy=2, disruptionsAllowed=0)
    unready = pods[2]["metadata"]["name"]
    # budget met, pod not ready: IfHealthyBudget lets it go without spending the budget
    await evict(objects, namespace="default", name=unready, body={})
    await harness.client.create("poddisruptionbudgets", pdb("other", minAvailable=1),
                                namespace="default")
    with pytest.raises(Internal, match="more than one PodDisruptionBudget"):
        await evict(objects, namespace="default", name=pods[0]["metadata"]["name"], body={})
