"""Deployment: ReplicaSets by template hash, revisions, rolling update within maxSurge and
maxUnavailable at every step, Recreate, undo reusing the old ReplicaSet, pause/resume,
revision history cleanup, status and conditions; on the real object layer."""

from __future__ import annotations

import copy

from ctlharness import ControllerHarness

from control.controllers.rollout import HASH_LABEL, REVISION, REVISION_HISTORY


def deploy(name: str = "web", replicas: int = 4, image: str = "v1", **spec) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": image}]}},
                     **spec}}


async def replicasets(h: ControllerHarness) -> list[dict]:
    return (await h.client.list("replicasets", namespace="default")).items


async def get_d(h: ControllerHarness, name: str = "web") -> dict:
    return await h.client.get("deployments", name, namespace="default")


async def make_ready(h: ControllerHarness, *, limit: int | None = None) -> int:
    """Mark not-ready live pods Ready (at most `limit`); returns how many."""
    n = 0
    for p in await h.pods():
        if p["metadata"].get("deletionTimestamp"):
            continue
        if not any(c["type"] == "Ready" and c["status"] == "True"
                   for c in p["status"].get("conditions") or []):
            if limit is not None and n >= limit:
                break
            await h.mark_pod(p)
            n += 1
    return n


async def rolled_out(h: ControllerHarness, name: str = "web") -> dict | None:
    """kubectl rollout status's test: observed, all updated, no old, all available."""
    d = await get_d(h, name)
    st, want = d.get("status") or {}, d["spec"]["replicas"]
    done = (st.get("observedGeneration", 0) >= d["metadata"]["generation"]
            and st.get("updatedReplicas") == want and st.get("replicas") == want
            and st.get("availableReplicas") == want)
    return d if done else None


async def converge(h: ControllerHarness, name: str = "web") -> dict:
    async def step():
        await make_ready(h)
        return await rolled_out(h, name)
    return await h.eventually(step, what=f"deployment {name} rolled out")


async def start_v2_rollout_of_4(h: ControllerHarness) -> None:
    """4 replicas of v1 rolled out (maxSurge 1, maxUnavailable 1), then the image set to v2."""
    await h.start("replicaset", "deployment")
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}}
    await h.client.create("deployments", deploy(replicas=4, strategy=strategy))
    await converge(h)
    await h.client.patch("deployments", "web", {"spec": {"template": {"spec": {
        "containers": [{"name": "c", "image": "v2"}]}}}}, namespace="default")


async def test_first_rollout_creates_hashed_rs_and_conditions(harness: ControllerHarness) -> None:
    await harness.start("replicaset", "deployment")
    d = await harness.client.create("deployments", deploy(replicas=2))
    d = await converge(harness)
    [rs] = await replicasets(harness)
    h = rs["metadata"]["labels"][HASH_LABEL]
    assert rs["metadata"]["name"] == f"web-{h}"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", HASH_LABEL: h}
    assert rs["metadata"]["annotations"][REVISION] == "1"
    assert d["metadata"]["annotations"][REVISION] == "1"
    ref = rs["metadata"]["ownerReferences"][0]
    assert ref["kind"] == "Deployment" and ref["controller"] and ref["uid"] == d["metadata"]["uid"]
    assert all(p["metadata"]["labels"][HASH_LABEL] == h for p in await harness.pods())
    conds = {c["type"]: c for c in d["status"]["conditions"]}
    assert conds["Available"]["status"] == "True"
    assert conds["Available"]["reason"] == "MinimumReplicasAvailable"
    assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert d["status"]["observedGeneration"] == d["metadata"]["generation"]

    async def scaled_event():
        evs = (await harness.client.list("events", namespace="default")).items
        return [e for e in evs if e["reason"] == "ScalingReplicaSet"]
    [ev] = await harness.eventually(scaled_event)
    assert ev["message"] == f"Scaled up replica set web-{h} from 0 to 2"


async def test_rolling_update_honours_surge_and_unavailable(harness: ControllerHarness) -> None:
    await start_v2_rollout_of_4(harness)
    seen_steps = 0
    for _ in range(60):
        await harness.settle(5)
        live = [p for p in await harness.pods() if not p["metadata"].get("deletionTimestamp")]
        ready = [p for p in live if any(c["type"] == "Ready" and c["status"] == "True"
                                        for c in p["status"].get("conditions") or [])]
        total_spec = sum(rs["spec"]["replicas"] for rs in await replicasets(harness))
        assert total_spec <= 5, f"maxSurge exceeded: {total_spec} replicas"
        assert len(live) <= 5, f"maxSurge exceeded: {len(live)} pods"
        assert len(ready) >= 3, f"maxUnavailable exceeded: {len(ready)} ready"
        if await rolled_out(harness):
            break
        seen_steps += 1
        await make_ready(harness, limit=1)      # one pod becomes ready per step
    d = await rolled_out(harness)
    assert d is not None, "rollout did not finish"
    assert seen_steps >= 3, "the rollout happened in one jump"
    images = {p["spec"]["containers"][0]["image"] for p in await harness.pods()}
    assert images == {"v2"}
    rss = sorted(await replicasets(harness), key=lambda r: r["metadata"]["annotations"][REVISION])
    assert [r["spec"]["replicas"] for r in rss] == [0, 4]
    assert d["metadata"]["annotations"][REVISION] == "2"


async def test_undo_reuses_old_replicaset(harness: ControllerHarness) -> None:
    await harness.start("replicaset", "deployment")
    await harness.client.create("deployments", deploy(replicas=2))
    await converge(harness)
    [rs1] = await replicasets(harness)
    await harness.client.patch("deployments", "web", {"spec": {"template": {"spec": {
        "containers": [{"name": "c", "image": "v2"}]}}}}, namespace="default")
    await converge(harness)
    # what `kubectl rollout undo` sends: rs1's template without the hash label
    template = copy.deepcopy(rs1["spec"]["template"])
    del template["metadata"]["labels"][HASH_LABEL]
    await harness.client.patch("deployments", "web", [
        {"op": "replace", "path": "/spec/template", "value": template}],
        patch_type="json", namespace="default")
    d = await converge(harness)
    rss = {r["metadata"]["name"]: r for r in await replicasets(harness)}
    assert len(rss) == 2, f"undo made a new ReplicaSet: {sorted(rss)}"
    back = rss[rs1["metadata"]["name"]]
    assert back["spec"]["replicas"] == 2
    assert back["metadata"]["annotations"][REVISION] == "3"
    assert back["metadata"]["annotations"][REVISION_HISTORY] == "1"
    assert d["metadata"]["annotations"][REVISION] == "3"
    assert {p["spec"]["containers"][0]["image"] for p in await harness.pods()} == {"v1"}


async def test_pause_stops_rollout_and_resume_continues(harness: ControllerHarness) -> None:
    await harness.start("replicaset", "deployment")
    await harness.client.create("deployments", deploy(replicas=2))
    await converge(harness)
    await harness.client.patch("deployments", "web", {"spec": {"paused": True}},
                               namespace="default")
    await harness.client.patch("deployments", "web", {"spec": {"template": {"spec": {
        "containers": [{"name": "c", "image": "v2"}]}}}}, namespace="default")

    async def paused_cond():
        d = await get_d(harness)
        c = {c["type"]: c for c in d["status"].get("conditions") or []}.get("Progressing", {})
        return d if c.get("reason") == "DeploymentPaused" else None
    await harness.eventually(paused_cond, what="DeploymentPaused condition")
    await harness.settle(30)
    assert len(await replicasets(harness)) == 1
    assert {p["spec"]["containers"][0]["image"] for p in await harness.pods()} == {"v1"}
    # scaling still works while paused
    await harness.client.patch("deployments", "web", {"spec": {"replicas": 3}},
                               namespace="default")
    await harness.eventually(lambda: _n_pods(harness, 3), what="scaled while paused")
    await harness.client.patch("deployments", "web", {"spec": {"paused": None}},
                               namespace="default")
    await converge(harness)
    assert len(await replicasets(harness)) == 2
    live = [p for p in await harness.pods() if not p["metadata"].get("deletionTimestamp")]
    assert {p["spec"]["containers"][0]["image"] for p in live} == {"v2"}


async def _n_pods(h: ControllerHarness, n: int) -> bool:
    return len([p for p in await h.pods() if not p["metadata"].get("deletionTimestamp")]) == n


async def test_recreate_scales_old_to_zero_first(harness: ControllerHarness) -> None:
    await harness.start("replicaset", "deployment")
    await harness.client.create("deployments", deploy(replicas=2, strategy={"type": "Recreate"}))
    await converge(harness)
    await harness.client.patch("deployments", "web", {"spec": {"template": {"spec": {
        "containers": [{"name": "c", "image": "v2"}]}}}}, namespace="default")
    for _ in range(40):
        await harness.settle(3)
        images = {p["spec"]["containers"][0]["image"] for p in await harness.pods()}
        assert images != {"v1", "v2"}, "Recreate ran old and new pods together"
        if await rolled_out(harness):
            break
        await make_ready(harness)
    assert await converge(harness)
    assert {p["spec"]["containers"][0]["image"] for p in await harness.pods()} == {"v2"}


async def test_revision_history_limit_and_change_cause(harness: ControllerHarness) -> None:
    await harness.start("replicaset", "deployment")
    await harness.client.create("deployments", deploy(replicas=1, revisionHistoryLimit=1))
    await converge(harness)
    for image in ("v2", "v3"):
        await harness.client.patch("deployments", "web", {
            "metadata": {"annotations": {"kubernetes.io/change-cause": f"set image {image}"}},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}},
            namespace="default")
        await converge(harness)

    async def two_left():
        rss = await replicasets(harness)
        return rss if len(rss) == 2 else None
    rss = await harness.eventually(two_left, what="history trimmed to 1 old ReplicaSet")
    revs = sorted(r["metadata"]["annotations"][REVISION] for r in rss)
    assert revs == ["2", "3"]
    newest = [r for r in rss if r["metadata"]["annotations"][REVISION] == "3"][0]
    assert newest["metadata"]["annotations"]["kubernetes.io/change-cause"] == "set image v3"


async def test_restart_annotation_rolls_new_rs(harness: ControllerHarness) -> None:
    await harness.start("replicaset", "deployment")
    await harness.client.create("deployments", deploy(replicas=2))
    await converge(harness)
    await harness.client.patch("deployments", "web", {"spec": {"template": {"metadata": {
        "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"}}}}},
        patch_type="strategic", namespace="default")
    await converge(harness)
    assert len(await replicasets(harness)) == 2


async def test_progress_deadline_exceeded(harness: ControllerHarness) -> None:
    await harness.start("replicaset", "deployment")
    await harness.client.create("deployments", deploy(replicas=1, progressDeadlineSeconds=30))
    await converge(harness)
    await harness.client.patch("deployments", "web", {"spec": {"template": {"spec": {
        "containers": [{"name": "c", "image": "broken"}]}}}}, namespace="default")

    async def progressing():
        d = await get_d(harness)
        conds = {c["type"]: c for c in d["status"].get("conditions") or []}
        return conds.get("Progressing")

    async def reason_is(reason: str):
        c = await progressing()
        return c if c and c["reason"] == reason else None
    await harness.eventually(lambda: reason_is("ReplicaSetUpdated"), what="rollout started")
    await harness.settle()
    await harness.clock.advance(20)
    await harness.settle()
    assert (await progressing())["status"] == "True"              # not yet
    await harness.clock.advance(11)
    c = await harness.eventually(lambda: reason_is("ProgressDeadlineExceeded"),
                                 what="deadline exceeded")
    assert c["status"] == "False"
    assert c["message"].endswith("has timed out progressing.")
    # progress again: the new pod turns ready and the rollout completes
    await converge(harness)
    assert (await progressing())["reason"] == "NewReplicaSetAvailable"


async def test_scale_to_zero_and_back(harness: ControllerHarness) -> None:
    await harness.start("replicaset", "deployment")
    await harness.client.create("deployments", deploy(replicas=2))
    await converge(harness)
    await harness.client.patch("deployments", "web", {"spec": {"replicas": 0}},
                               namespace="default", subresource="scale")
    d = await converge(harness)
    assert await harness.pods() == []
    assert d["status"].get("replicas", 0) == 0
    [rs] = await replicasets(harness)
    assert rs["spec"]["replicas"] == 0
    await harness.client.patch("deployments", "web", {"spec": {"replicas": 3}},
                               namespace="default", subresource="scale")
    await converge(harness)
    assert len(await harness.pods()) == 3 and len(await replicasets(harness)) == 1


async def test_scaling_a_paused_rollout_is_proportional(harness: ControllerHarness) -> None:
    await start_v2_rollout_of_4(harness)

    async def stuck():      # new pods never become ready: old 3, new 2
        sizes = sorted(r["spec"]["replicas"] for r in await replicasets(harness))
        return sizes == [2, 3]
    await harness.eventually(stuck, what="rollout stuck at old=3 new=2")
    await harness.client.patch("deployments", "web", {"spec": {"paused": True}},
                               namespace="default")
    await harness.settle()
    await harness.client.patch("deployments", "web", {"spec": {"replicas": 8}},
                               namespace="default")

    async def shared():
        rss = await replicasets(harness)
        by_rev = {r["metadata"]["annotations"][REVISION]: r["spec"]["replicas"] for r in rss}
        return by_rev if by_rev == {"1": 5, "2": 4} else None
    await harness.eventually(shared, what="old 5 / new 4 after scaling to 8 (+1 surge)")
