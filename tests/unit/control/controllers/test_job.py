"""Job controller: completions and parallelism, back-off and backoffLimit, deadlines, TTL,
suspend, Indexed Jobs, pod failure policy; on the real object layer with a fake clock."""

from __future__ import annotations

import json

from ctlharness import ControllerHarness
from jobfixtures import cond, events, finish, get_job, job, job_pods


async def _n_active(h: ControllerHarness, n: int, name: str = "pi") -> list[dict]:
    async def check():
        pods = await job_pods(h, name, phase="Pending")
        return pods if len(pods) == n else None
    return await h.eventually(check, what=f"{n} pending pods of job {name}")


async def _condition(h: ControllerHarness, ctype: str, name: str = "pi") -> dict:
    async def check():
        j = await get_job(h, name)
        return j if cond(j, ctype) else None
    return await h.eventually(check, what=f"job {name} condition {ctype}")


async def test_one_pod_runs_to_completion(harness: ControllerHarness) -> None:
    await harness.start("job")
    created = await harness.client.create("jobs", job())
    uid = created["metadata"]["uid"]
    [pod] = await _n_active(harness, 1)
    labels = pod["metadata"]["labels"]
    assert labels["batch.kubernetes.io/controller-uid"] == uid == labels["controller-uid"]
    assert labels["batch.kubernetes.io/job-name"] == "pi" == labels["job-name"]
    assert pod["metadata"]["generateName"] == "pi-"
    ref = pod["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["uid"], ref["controller"]) == ("Job", uid, True)
    running = await get_job(harness)
    assert running["status"]["active"] == 1 and running["status"]["startTime"]
    assert cond(running, "Complete") is None
    await finish(harness, pod)
    done = await _condition(harness, "Complete")
    st = done["status"]
    assert st["succeeded"] == 1 and st["active"] == 0 and st.get("failed", 0) == 0
    assert st["completionTime"] and cond(done, "SuccessCriteriaMet")
    assert cond(done, "Complete")["reason"] == "CompletionsReached"
    assert [e["message"] for e in await events(harness, "Completed")] == ["Job completed"]
    assert len(await events(harness, "SuccessfulCreate")) == 1
    await harness.settle()
    assert len(await job_pods(harness)) == 1           # nothing more is started


async def test_completions_three_parallelism_two(harness: ControllerHarness) -> None:
    await harness.start("job")
    await harness.client.create("jobs", job(completions=3, parallelism=2))
    first = await _n_active(harness, 2)
    await finish(harness, first[0])
    second = await harness.eventually(
        lambda: _pending_not(harness, {first[1]["metadata"]["name"]}), what="a third pod")
    assert len(await job_pods(harness, phase="Pending")) == 2
    await finish(harness, first[1])
    await harness.settle()
    assert len(await job_pods(harness, phase="Pending")) == 1     # only one left to do
    await finish(harness, second[0])
    done = await _condition(harness, "Complete")
    assert done["status"]["succeeded"] == 3 and len(await job_pods(harness)) == 3


async def _pending_not(h: ControllerHarness, old: set[str]) -> list[dict] | None:
    pods = [p for p in await job_pods(h, phase="Pending") if p["metadata"]["name"] not in old]
    return pods or None


async def test_backoff_limit_fails_the_job(harness: ControllerHarness) -> None:
    await harness.start("job", job_backoff=0)
    await harness.client.create("jobs", job(backoffLimit=2))
    seen: set[str] = set()
    for _ in range(3):
        [pod] = await harness.eventually(lambda: _pending_not(harness, seen), what="a pod")
        seen.add(pod["metadata"]["name"])
        await finish(harness, pod, code=1)
    failed = await _condition(harness, "Failed")
    c = cond(failed, "Failed")
    assert (c["reason"], c["message"]) == ("BackoffLimitExceeded",
                                           "Job has reached the specified backoff limit")
    assert cond(failed, "FailureTarget") and failed["status"]["failed"] == 3
    assert [e["type"] for e in await events(harness, "BackoffLimitExceeded")] == ["Warning"]
    await harness.settle()
    assert len(await job_pods(harness)) == 3            # failed pods are kept for their logs


async def test_failed_pod_replaced_after_exponential_backoff(harness: ControllerHarness) -> None:
    await harness.start("job", job_backoff=10)
    await harness.client.create("jobs", job(backoffLimit=6))
    [pod] = await _n_active(harness, 1)
    await finish(harness, pod, code=1)
    await harness.settle()
    await harness.clock.advance(9)
    await harness.settle()
    assert await job_pods(harness, phase="Pending") == []        # still backing off
    await harness.clock.advance(1.5)
    [second] = await _n_active(harness, 1)
    await finish(harness, second, code=1)
    await harness.settle()
    await harness.clock.advance(15)                              # second failure: 20 s
    await harness.settle()
    assert await job_pods(harness, phase="Pending") == []
    await harness.clock.advance(6)
    await _n_active(harness, 1)


async def test_active_deadline_fails_and_deletes_pods(harness: ControllerHarness) -> None:
    await harness.start("job")
    await harness.client.create("jobs", job(activeDeadlineSeconds=30, parallelism=2,
                                            completions=4))
    await _n_active(harness, 2)
    await harness.clock.advance(31)
    failed = await _condition(harness, "Failed")
    c = cond(failed, "Failed")
    assert (c["reason"], c["message"]) == ("DeadlineExceeded",
                                           "Job was active longer than specified deadline")
    assert await job_pods(harness) == [] and failed["status"]["active"] == 0


async def test_ttl_after_finished_deletes_the_job(harness: ControllerHarness) -> None:
    await harness.start("job", "garbagecollector")
    await harness.client.create("jobs", job(ttlSecondsAfterFinished=60))
    [pod] = await _n_active(harness, 1)
    await finish(harness, pod)
    await _condition(harness, "Complete")
    await harness.clock.advance(30)
    await harness.settle()
    assert await get_job(harness)
    await harness.clock.advance(31)

    async def gone():
        return not [j for j in (await harness.client.list("jobs", namespace="default")).items]
    await harness.eventually(gone, what="job deleted by its TTL")
    await harness.eventually(lambda: _no_pods(harness), what="pods collected")


async def _no_pods(h: ControllerHarness) -> bool:
    return not await h.pods()


async def test_suspend_and_resume(harness: ControllerHarness) -> None:
    await harness.start("job")
    await harness.client.create("jobs", job(suspend=True, parallelism=2, completions=2))
    j = await _condition(harness, "Suspended")
    assert cond(j, "Suspended")["reason"] == "JobSuspended" and await job_pods(harness) == []
    assert not j["status"].get("startTime")
    await harness.client.patch("jobs", "pi", {"spec": {"suspend": False}}, namespace="default")
    await _n_active(harness, 2)
    resumed = await get_job(harness)
    assert resumed["status"]["startTime"] and not cond(resumed, "Suspended")
    assert [c["reason"] for c in resumed["status"]["conditions"]] == ["JobResumed"]
    await harness.client.patch("jobs", "pi", {"spec": {"suspend": True}}, namespace="default")
    await harness.eventually(lambda: _no_pods(harness), what="pods deleted on suspend")
    assert (await _condition(harness, "Suspended"))["status"]["active"] == 0


async def test_indexed_job(harness: ControllerHarness) -> None:
    await harness.start("job")
    await harness.client.create("jobs", job(completionMode="Indexed", completions=3,
                                            parallelism=2))
    pods = await _n_active(harness, 2)
    by_index = {int(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]): p
                for p in pods}
    assert sorted(by_index) == [0, 1]
    p1 = by_index[1]
    assert p1["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == "1"
    assert p1["spec"]["hostname"] == "pi-1" and p1["metadata"]["generateName"] == "pi-1-"
    env = p1["spec"]["containers"][0]["env"]
    assert env == [{"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
        "apiVersion": "v1",
        "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}]
    await finish(harness, p1)
    [p2] = await harness.eventually(
        lambda: _pending_not(harness, {by_index[0]["metadata"]["name"]}), what="index 2")
    assert p2["spec"]["hostname"] == "pi-2"
    assert (await get_job(harness))["status"]["completedIndexes"] == "1"
    await finish(harness, p2)
    await harness.eventually(lambda: _indexes(harness, "1-2"), what="completedIndexes 1-2")
    await finish(harness, by_index[0], code=3)                   # index 0 fails: runs again
    [again] = await harness.eventually(
        lambda: _pending_not(harness, set()), what="index 0 again")
    assert again["spec"]["hostname"] == "pi-0"
    await finish(harness, again)
    done = await _condition(harness, "Complete")
    assert done["status"]["completedIndexes"] == "0-2" and done["status"]["succeeded"] == 3
    assert done["status"]["failed"] == 1


async def _indexes(h: ControllerHarness, want: str) -> bool:
    return (await get_job(h))["status"].get("completedIndexes") == want


def _policy(*rules: dict) -> dict:
    return {"rules": list(rules)}


async def test_pod_failure_policy_fail_job_on_exit_code(harness: ControllerHarness) -> None:
    await harness.start("job", job_backoff=0)
    await harness.client.create("jobs", job(backoffLimit=6, podFailurePolicy=_policy(
        {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In",
                                              "values": [42]}})))
    [pod] = await _n_active(harness, 1)
    await finish(harness, pod, code=42)
    failed = await _condition(harness, "Failed")
    c = cond(failed, "Failed")
    assert c["reason"] == "PodFailurePolicy"
    assert c["message"] == (f"Container main for pod default/{pod['metadata']['name']} failed "
                            "with exit code 42 matching FailJob rule at index 0")


async def test_pod_failure_policy_ignore_disruption(harness: ControllerHarness) -> None:
    await harness.start("job", job_backoff=0)
    await harness.client.create("jobs", job(backoffLimit=0, podFailurePolicy=_policy(
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [0]}})))
    [pod] = await _n_active(harness, 1)
    await finish(harness, pod, code=137, conditions=[
        {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}])
    [second] = await harness.eventually(
        lambda: _pending_not(harness, set()), what="a replacement pod")
    j = await get_job(harness)
    assert not cond(j, "Failed") and j["status"].get("failed", 0) == 0   # not counted
    await finish(harness, second, code=1)                        # counted: backoffLimit 0
    assert cond(await _condition(harness, "Failed"), "Failed")["reason"] == \
        "BackoffLimitExceeded"


async def test_work_queue_completes_when_all_exit(harness: ControllerHarness) -> None:
    await harness.start("job")
    await harness.client.create("jobs", job(parallelism=2))
    a, b = await _n_active(harness, 2)
    await finish(harness, a)
    await harness.settle()
    j = await get_job(harness)
    assert not cond(j, "Complete") and j["status"]["active"] == 1
    assert len(await job_pods(harness)) == 2                     # no new pod after a success
    await finish(harness, b)
    assert (await _condition(harness, "Complete"))["status"]["succeeded"] == 2


async def test_counts_survive_pod_deletion(harness: ControllerHarness) -> None:
    await harness.start("job")
    await harness.client.create("jobs", job())
    [pod] = await _n_active(harness, 1)
    await finish(harness, pod)
    await _condition(harness, "Complete")
    await harness.client.delete("pods", pod["metadata"]["name"], namespace="default")
    await harness.settle()
    j = await get_job(harness)
    assert j["status"]["succeeded"] == 1 and await job_pods(harness) == []


async def test_pods_of_another_job_are_not_taken(harness: ControllerHarness) -> None:
    await harness.start("job")
    tmpl_labels = {"app": "batch"}
    one = job("one", parallelism=1)
    one["spec"]["template"]["metadata"] = {"labels": tmpl_labels}
    two = job("two", parallelism=1)
    two["spec"]["template"]["metadata"] = {"labels": tmpl_labels}
    await harness.client.create("jobs", one)
    await harness.client.create("jobs", two)
    await _n_active(harness, 1, "one")
    await _n_active(harness, 1, "two")
    await harness.settle()
    assert len(await harness.pods(selector="app=batch")) == 2


async def test_failed_waits_for_terminating_pods_and_keeps_its_reason(
        harness: ControllerHarness) -> None:
    """1.31+: FailureTarget first; Failed once the pods are gone, with the first reason even
    if the killed pods then count as failures beyond backoffLimit."""
    await harness.start("job")
    await harness.client.create("jobs", job(activeDeadlineSeconds=10, backoffLimit=0))
    [pod] = await _n_active(harness, 1)
    await harness.mark_pod(pod, node="node-1")              # bound: deleted gracefully
    await harness.clock.advance(11)

    async def target():
        j = await get_job(harness)
        return j if cond(j, "FailureTarget") else None
    j = await harness.eventually(target, what="FailureTarget")
    assert not cond(j, "Failed") and j["status"]["terminating"] == 1
    await finish(harness, pod, code=137)                    # the kubelet killed it
    await harness.client.delete("pods", pod["metadata"]["name"], namespace="default",
                                grace_period=0)
    failed = await _condition(harness, "Failed")
    assert cond(failed, "Failed")["reason"] == "DeadlineExceeded"
    assert cond(failed, "FailureTarget")["reason"] == "DeadlineExceeded"


async def test_pods_killed_by_suspend_are_not_failures(harness: ControllerHarness) -> None:
    await harness.start("job")
    await harness.client.create("jobs", job(backoffLimit=0))
    [pod] = await _n_active(harness, 1)
    await harness.mark_pod(pod, node="node-1")
    await harness.client.patch("jobs", "pi", {"spec": {"suspend": True}}, namespace="default")
    await _condition(harness, "Suspended")
    await finish(harness, pod, code=143)                    # SIGTERM from the kubelet
    await harness.settle()
    j = await get_job(harness)
    assert not cond(j, "Failed") and j["status"].get("failed", 0) == 0


async def test_a_job_stored_without_selector_takes_no_strangers(
        harness: ControllerHarness) -> None:
    """A Job stored by an older knet (no generated selector) must not adopt every orphan."""
    await harness.client.create("pods", {"apiVersion": "v1", "kind": "Pod",
                                         "metadata": {"name": "stranger"},
                                         "spec": {"containers": [{"name": "c",
                                                                  "image": "busybox"}]}})
    old = await harness.client.create("jobs", job("legacy"))
    old["spec"].pop("selector")
    store = harness.client.objects.store           # write it as an old knet stored it
    await store.update("/registry/jobs/default/legacy", json.dumps(old).encode())
    await harness.start("job")
    [pod] = await _n_active(harness, 1, "legacy")
    assert pod["metadata"]["labels"]["batch.kubernetes.io/controller-uid"] == \
        old["metadata"]["uid"]
    await harness.settle()
    stranger = await harness.client.get("pods", "stranger", namespace="default")
    assert not stranger["metadata"].get("ownerReferences")
