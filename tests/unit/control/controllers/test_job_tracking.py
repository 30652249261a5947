"""The Job tracking finalizer (`batch.kubernetes.io/job-tracking`): Job pods carry it, lose it
once counted, a counted pod that is deleted stays counted (the Job does not run it again nor
forget it), a flush interrupted between staging and counting completes, and the pods of a
deleted Job are not left stuck in Terminating."""

from __future__ import annotations

from ctlharness import ControllerHarness
from jobfixtures import cond, finish, get_job, job, job_pods

FINALIZER = "batch.kubernetes.io/job-tracking"


async def _pending(h: ControllerHarness, n: int) -> list[dict]:
    async def check() -> list[dict] | None:
        pods = await job_pods(h, phase="Pending")
        return pods if len(pods) == n else None
    return await h.eventually(check, what=f"{n} pending pods")


async def test_finalizer_on_create_removed_once_counted(harness: ControllerHarness) -> None:
    await harness.start("job")
    await harness.client.create("jobs", job(completions=2))
    [pod] = await _pending(harness, 1)
    assert FINALIZER in pod["metadata"]["finalizers"]
    await finish(harness, pod)

    async def released() -> dict | None:
        cur = await harness.client.get("pods", pod["metadata"]["name"], namespace="default")
        return cur if FINALIZER not in (cur["metadata"].get("finalizers") or []) else None
    await harness.eventually(released, what="the finalizer removed")
    j = await get_job(harness)
    assert j["status"]["succeeded"] == 1
    assert j["status"]["uncountedTerminatedPods"] == {}


async def test_deleted_finished_pod_stays_counted(harness: ControllerHarness) -> None:
    """completions 2, one at a time: the first pod succeeds and is deleted, the second
    succeeds: two completions (counting only the pods that exist would say one, forever)."""
    await harness.start("job")
    await harness.client.create("jobs", job(completions=2))
    [first] = await _pending(harness, 1)
    await finish(harness, first)

    async def counted() -> bool:
        return (await get_job(harness))["status"].get("succeeded") == 1
    await harness.eventually(counted, what="one success counted")
    await harness.client.delete("pods", first["metadata"]["name"], namespace="default")
    [second] = await _pending(harness, 1)
    await finish(harness, second)

    async def complete() -> dict | None:
        j = await get_job(harness)
        return j if cond(j, "Complete") else None
    done = await harness.eventually(complete, what="Complete")
    assert done["status"]["succeeded"] == 2
    await harness.settle()
    assert len(await job_pods(harness, live=False)) == 1        # no third pod was started


async def test_interrupted_flush_is_finished(harness: ControllerHarness) -> None:
    """A crash after the finalizer was removed but before the count: the staged UID whose
    pod no longer carries the finalizer is counted on the next sync."""
    await harness.client.create("jobs", job(completions=3))
    j = await get_job(harness)
    body = {**j, "status": {"uncountedTerminatedPods": {"succeeded": ["gone-uid"]}}}
    await harness.client.update("jobs", body, subresource="status")
    await harness.start("job")

    async def moved() -> dict | None:
        cur = await get_job(harness)
        return cur if cur["status"].get("succeeded") == 1 else None
    got = await harness.eventually(moved, what="the staged pod counted")
    assert got["status"]["uncountedTerminatedPods"] == {}


async def test_pods_of_a_deleted_job_are_released(harness: ControllerHarness) -> None:
    await harness.start("job")
    await harness.client.create("jobs", job(parallelism=2, completions=2))
    pods = await _pending(harness, 2)
    await harness.client.delete("jobs", "pi", namespace="default")
    await harness.settle()
    for pod in pods:        # what the garbage collector does after the Job went
        await harness.client.delete("pods", pod["metadata"]["name"], namespace="default")

    async def gone() -> bool:
        return not await job_pods(harness, live=False)
    await harness.eventually(gone, what="no pod left in Terminating")
