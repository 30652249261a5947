"""ReplicaSet / ReplicationController: keep N pods, self-heal, adopt and release by selector,
scale down the right pods, status counts; on the real object layer with a fake clock."""

from __future__ import annotations

import re

from ctlharness import ControllerHarness


def rs(name: str = "web", replicas: int = 3, **extra) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": {**labels, "tier": "fe"}},
                                  "spec": {"containers": [{"name": "c", "image": "knet/whoami"}]}},
                     **extra}}


async def _count(h: ControllerHarness, n: int, selector: str = "app=web") -> list[dict]:
    async def check():
        pods = [p for p in await h.pods(selector=selector)
                if not p["metadata"].get("deletionTimestamp")]
        return pods if len(pods) == n else None
    return await h.eventually(check, what=f"{n} pods for {selector}")


async def test_creates_replicas_named_and_owned(harness: ControllerHarness) -> None:
    await harness.start("replicaset")
    owner = await harness.client.create("replicasets", rs())
    pods = await _count(harness, 3)
    for p in pods:
        assert re.fullmatch(r"web-[bcdfghjklmnpqrstvwxz2456789]{5}", p["metadata"]["name"])
        ref = p["metadata"]["ownerReferences"][0]
        assert ref["uid"] == owner["metadata"]["uid"] and ref["controller"] is True
        assert p["metadata"]["labels"] == {"app": "web", "tier": "fe"}
    await harness.settle()
    assert len(await harness.pods()) == 3     # no double creation while caches catch up


async def test_self_heals_after_pod_deletion(harness: ControllerHarness) -> None:
    await harness.start("replicaset")
    await harness.client.create("replicasets", rs())
    pods = await _count(harness, 3)
    victim = pods[0]["metadata"]["name"]
    await harness.client.delete("pods", victim, namespace="default")
    after = await harness.eventually(
        lambda: _names_if(harness, 3, exclude=victim), what="replacement pod")
    assert victim not in after


async def _names_if(h: ControllerHarness, n: int, exclude: str) -> set[str] | None:
    names = {p["metadata"]["name"] for p in await h.pods(selector="app=web")}
    return names if len(names) == n and exclude not in names else None


async def test_status_counts_ready_and_available(harness: ControllerHarness) -> None:
    await harness.start("replicaset")
    await harness.client.create("replicasets", rs(replicas=2))
    pods = await _count(harness, 2)
    await harness.mark_pod(pods[0], node="node-1")

    async def status():
        st = (await harness.client.get("replicasets", "web", namespace="default"))["status"]
        return st if st.get("readyReplicas") == 1 else None
    st = await harness.eventually(status, what="readyReplicas=1")
    assert st["replicas"] == 2 and st["fullyLabeledReplicas"] == 2
    assert st["availableReplicas"] == 1 and st["observedGeneration"] == 1


async def test_min_ready_seconds_delays_availability(harness: ControllerHarness) -> None:
    await harness.start("replicaset")
    await harness.client.create("replicasets", rs(replicas=1, minReadySeconds=10))
    pods = await _count(harness, 1)
    await harness.mark_pod(pods[0], node="node-1")

    async def st():
        return (await harness.client.get("replicasets", "web", namespace="default"))["status"]
    await harness.eventually(lambda: _ready(st), what="ready")
    assert (await st()).get("availableReplicas", 0) == 0
    await harness.clock.advance(11)
    await harness.eventually(lambda: _available(st), what="available after minReadySeconds")


async def _ready(st):
    return (await st()).get("readyReplicas") == 1


async def _available(st):
    return (await st()).get("availableReplicas") == 1


async def test_scale_down_prefers_unscheduled_and_not_ready(harness: ControllerHarness) -> None:
    await harness.start("replicaset")
    await harness.client.create("replicasets", rs(replicas=3))
    pods = await _count(harness, 3)
    keep = [await harness.mark_pod(p, node="node-1") for p in pods[:2]]

    async def seen_ready():      # the controller's cache has the two ready pods
        st = (await harness.client.get("replicasets", "web", namespace="default"))["status"]
        return st.get("readyReplicas") == 2
    await harness.eventually(seen_ready, what="readyReplicas=2")
    await harness.client.patch("replicasets", "web", {"spec": {"replicas": 2}},
                               namespace="default")
    left = await _count(harness, 2)
    assert {p["metadata"]["name"] for p in left} == {p["metadata"]["name"] for p in keep}


async def test_adopts_orphan_and_releases_relabelled(harness: ControllerHarness) -> None:
    await harness.start("replicaset")
    orphan = await harness.client.create("pods", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "stray", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "knet/whoami"}]}})
    owner = await harness.client.create("replicasets", rs(replicas=2))
    pods = await _count(harness, 2)
    assert "stray" in {p["metadata"]["name"] for p in pods}
    stray = await harness.client.get("pods", "stray", namespace="default")
    assert stray["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]
    assert orphan["metadata"]["uid"] == stray["metadata"]["uid"]
    # relabel it out: released (no owner) and replaced
    await harness.client.patch("pods", "stray", {"metadata": {"labels": {"app": "debug"}}},
                               namespace="default")
    await _count(harness, 2)

    async def released():
        p = await harness.client.get("pods", "stray", namespace="default")
        return not p["metadata"].get("ownerReferences")
    await harness.eventually(released, what="stray released")


async def test_failed_pod_is_replaced(harness: ControllerHarness) -> None:
    await harness.start("replicaset")
    await harness.client.create("replicasets", rs(replicas=1))
    [pod] = await _count(harness, 1)
    await harness.mark_pod(pod, node="node-1", ready=False, phase="Failed")

    async def replaced():
        pods = await harness.pods(selector="app=web")
        running = [p for p in pods if p["status"].get("phase") != "Failed"]
        return len(pods) == 2 and len(running) == 1
    await harness.eventually(replaced, what="replacement of a failed pod")


async def test_replication_controller(harness: ControllerHarness) -> None:
    await harness.start("replicationcontroller")
    await harness.client.create("replicationcontrollers", {
        "apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"app": "web"},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "x"}]}}}})
    pods = await _count(harness, 2)
    assert pods[0]["metadata"]["ownerReferences"][0]["kind"] == "ReplicationController"


async def test_events_recorded(harness: ControllerHarness) -> None:
    await harness.start("replicaset")
    await harness.client.create("replicasets", rs(replicas=2))
    await _count(harness, 2)

    async def events():
        evs = (await harness.client.list("events", namespace="default")).items
        return [e for e in evs if e["reason"] == "SuccessfulCreate"]
    evs = await harness.eventually(lambda: _len2(events), what="2 SuccessfulCreate events")
    e = evs[0]
    assert e["involvedObject"]["kind"] == "ReplicaSet" and e["involvedObject"]["name"] == "web"
    assert e["source"]["component"] == "replicaset-controller"
    assert e["message"].startswith("Created pod: web-") and e["count"] == 1


async def _len2(f):
    evs = await f()
    return evs if len(evs) == 2 else None
