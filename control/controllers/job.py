"""Job (batch/v1): run pods until `completions` of them succeed, `parallelism` at a time.

One level-triggered reconcile per Job: claim its pods (the selector the API generated), sort
them (job_pods), decide whether the Job has failed (podFailurePolicy FailJob, backoffLimit,
activeDeadlineSeconds), succeeded, or is suspended; otherwise create the missing pods (after
the failure back-off, lowest free completion indexes first when Indexed) or delete the surplus;
then write status. A terminal Job first gets FailureTarget / SuccessCriteriaMet, its remaining
pods are deleted, and Failed / Complete follows once none is left (Kubernetes 1.31+). A
finished Job with ttlSecondsAfterFinished is deleted (background propagation) when it expires.

Counting goes through the tracking finalizer (job_tracking): a pod is counted once, when its
finalizer is removed, so deleting a finished pod neither makes the Job run it again nor loses
it from status.succeeded / failed; pods stopped because the Job is suspended are not failures.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from control.clientbase import Client, Obj
from control.clock import Clock, parse_rfc3339, rfc3339
from control.controllers.base import Controller, Requeue
from control.controllers.claims import ControllerRefManager
from control.controllers.events import EventRecorder
from control.controllers.job_pods import (
    PodSets,
    format_indexes,
    job_pod,
    job_selector,
    parse_indexes,
    pod_index,
    sort_pods,
)
from control.controllers.job_policy import (
    BACKOFF_EXCEEDED,
    COMPLETIONS_REACHED,
    DEADLINE_EXCEEDED,
    Backoff,
    condition,
    failure_verdict,
    has_condition,
    set_condition,
)
from control.controllers.job_tracking import flush, stage, tracked, untrack
from control.controllers.podcontrol import PodControl
from control.controllers.replicaset import deletion_order
from control.controllers.util import Expectations, controller_ref, deep, is_terminating, meta
from control.errors import NotFound
from control.informer import Informer, object_key

__all__ = ["JobController"]

_BURST = 500


class JobController(Controller):
    name = "job"

    def __init__(self, client: Client, *, clock: Clock, recorder: EventRecorder,
                 jobs: Informer, pods: Informer, backoff: Backoff | None = None,
                 workers: int = 2) -> None:
        super().__init__(client, clock=clock, workers=workers)
        self.recorder = recorder
        self.jobs = jobs
        self.pods = pods
        self.backoff = backoff or Backoff()
        self.expect = Expectations(clock=clock)
        self.refs = ControllerRefManager(client, "pods", log=self.log, owner_kind="Job")
        self.pod_control = PodControl(client, recorder=recorder, expect=self.expect)
        jobs.add_handler(on_add=self._job_changed, on_delete=self._job_changed,
                         on_update=lambda old, new: self._job_changed(new))
        pods.add_handler(on_add=self._pod_changed, on_delete=self._pod_changed,
                         on_update=lambda old, new: self._pod_changed(new))

    def _job_changed(self, job: Obj) -> None:
        self.enqueue(object_key(job))

    def _pod_changed(self, pod: Obj) -> None:
        ref = controller_ref(pod)
        if ref is not None and ref.get("kind") == "Job":
            self.enqueue(f"{meta(pod).get('namespace', '')}/{ref.get('name')}")

    # ---- reconcile -------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        job = self.jobs.get(key)
        if job is None:
            self.expect.forget(key)
            await self._release(key, None)
            return
        if is_terminating(job):
            await self._release(key, job)
            return
        if has_condition(job, "Complete") or has_condition(job, "Failed"):
            await self._release(key, job)
            await self._expire(job)
            return
        selector = job_selector(job)
        candidates = self.pods.list(namespace=meta(job).get("namespace"))
        pods = await self.refs.claim(job, candidates, selector)
        status = deep(job.get("status") or {})
        job, pods = await self._track(job, pods, status)
        adds, dels = self.expect.pending(key, {meta(p)["name"]: p for p in pods})
        sets = sort_pods(p for p in pods if meta(p)["name"] not in dels)
        now = self.clock.now()
        requeue = await self._step(key, job, sets, status, adds, now)
        await self._write_status(job, status)
        if requeue is not None:
            raise Requeue(requeue)

    async def _step(self, key: str, job: Obj, sets: PodSets, status: Obj, adds: set[str],
                    now: datetime) -> float | None:
        """Decide and act; fills `status`; the seconds until a look again is due, if any."""
        spec = job.get("spec") or {}
        policy = spec.get("podFailurePolicy")
        verdicts = [failure_verdict(policy, p) for p in sets.failed]
        # pods the controller stopped because the Job is suspended are not failures
        counted = [p for p, v in zip(sets.failed, verdicts, strict=True)
                   if v.action != "Ignore" and not (spec.get("suspend") and is_terminating(p))]
        fail_job = next((v for v in verdicts if v.action == "FailJob"), None)
        succeeded = self._count(spec, sets, status)
        status["failed"] = max(int(status.get("failed") or 0), len(counted))
        suspended = bool(spec.get("suspend"))
        if not suspended and not status.get("startTime"):
            status["startTime"] = rfc3339(now)
        failure: tuple[str, str] | None = None
        target, met = condition(job, "FailureTarget"), condition(job, "SuccessCriteriaMet")
        if target and target.get("status") == "True":      # decided: only the pods are left
            failure = (str(target.get("reason")), str(target.get("message")))
        elif met and met.get("status") == "True":
            await self._finish(key, job, sets, status, now, "SuccessCriteriaMet", "Complete",
                               COMPLETIONS_REACHED)
            return None
        elif fail_job is not None:
            failure = ("PodFailurePolicy", fail_job.message)
        elif status["failed"] + self._restarts(spec, sets) > int(spec.get("backoffLimit", 6)):
            failure = BACKOFF_EXCEEDED
        elif (deadline := self._deadline_in(spec, status, now)) is not None and deadline <= 0:
            failure = DEADLINE_EXCEEDED
        if failure is not None:
            await self._finish(key, job, sets, status, now, "FailureTarget", "Failed", failure)
            return None
        if self._complete(spec, succeeded, sets):
            await self._finish(key, job, sets, status, now, "SuccessCriteriaMet", "Complete",
                               COMPLETIONS_REACHED)
            return None
        if suspended:
            await self._delete(key, job, sets.active)
            sets.terminating += sets.active
            sets.active = []
            if set_condition(status, "Suspended", "True", "JobSuspended", "Job suspended", now):
                await self.recorder.record(job, "Normal", "Suspended", "Job suspended")
            self._counters(status, sets)
            return None
        resumed = condition(job, "Suspended")
        if resumed and resumed.get("status") == "True":
            set_condition(status, "Suspended", "False", "JobResumed", "Job resumed", now)
            status["startTime"] = rfc3339(now)
            await self.recorder.record(job, "Normal", "Resumed", "Job resumed")
        wait = await self._scale(key, job, spec, sets, counted, status, adds, now)
        self._counters(status, sets)
        deadline = self._deadline_in(spec, status, now)
        waits = [w for w in (wait, deadline) if w is not None and w > 0]
        return min(waits) + 0.01 if waits else None

    def _count(self, spec: Obj, sets: PodSets, status: Obj) -> int:
        """status.succeeded (and completedIndexes when Indexed), never going down."""
        if spec.get("completionMode") == "Indexed":
            limit = int(spec.get("completions") or 0)
            done = parse_indexes(status.get("completedIndexes"), limit)
            done.update(i for p in sets.succeeded
                        if (i := pod_index(p)) is not None and i < limit)
            status["completedIndexes"] = format_indexes(done)
            status["succeeded"] = len(done)
        else:
            status["succeeded"] = max(int(status.get("succeeded") or 0), len(sets.succeeded))
        return int(status["succeeded"])

    @staticmethod
    def _restarts(spec: Obj, sets: PodSets) -> int:
        pod_spec = (spec.get("template") or {}).get("spec") or {}
        return sets.restarts() if pod_spec.get("restartPolicy") == "OnFailure" else 0

    @staticmethod
    def _complete(spec: Obj, succeeded: int, sets: PodSets) -> bool:
        completions = spec.get("completions")
        if completions is not None:
            return succeeded >= int(completions)
        return succeeded > 0 and not sets.active      # a work queue: one success, then drain

    @staticmethod
    def _deadline_in(spec: Obj, status: Obj, now: datetime) -> float | None:
        ads = spec.get("activeDeadlineSeconds")
        start = parse_rfc3339(status.get("startTime"))
        if ads is None or start is None or spec.get("suspend"):
            return None
        return float(ads) - (now - start).total_seconds()

    @staticmethod
    def _counters(status: Obj, sets: PodSets) -> None:
        status["active"] = len(sets.active)
        status["ready"] = sets.ready
        status["terminating"] = len(sets.terminating)
        status.setdefault("uncountedTerminatedPods", {})

    async def _finish(self, key: str, job: Obj, sets: PodSets, status: Obj, now: datetime,
                      interim: str, final: str, why: tuple[str, str]) -> None:
        """FailureTarget/SuccessCriteriaMet now; Failed/Complete once no pod runs."""
        reason, message = why
        set_condition(status, interim, "True", reason, message, now)
        await self._delete(key, job, sets.active)
        left = len(sets.active) + len(sets.terminating)
        sets.terminating += sets.active
        sets.active = []
        self._counters(status, sets)
        if left:
            return
        set_condition(status, final, "True", reason, message, now)
        if final == "Complete":
            status["completionTime"] = rfc3339(now)
            await self.recorder.record(job, "Normal", "Completed", "Job completed")
        else:
            await self.recorder.record(job, "Warning", reason, message)

    # ---- pods ------------------------------------------------------------------------------

    async def _scale(self, key: str, job: Obj, spec: Obj, sets: PodSets, counted: list[Obj],
                     status: Obj, adds: set[str], now: datetime) -> float | None:
        parallelism = int(spec.get("parallelism", 1))
        completions = spec.get("completions")
        succeeded = int(status.get("succeeded") or 0)
        if completions is None:
            want = parallelism if succeeded == 0 else len(sets.active)
        else:
            want = max(0, min(parallelism, int(completions) - succeeded))
        blocking = sets.terminating if spec.get("podReplacementPolicy") == "Failed" else []
        if spec.get("completionMode") == "Indexed":
            return await self._scale_indexed(key, job, spec, sets, status, adds, want,
                                             len(blocking), counted, now)
        have = len(sets.active) + len(adds) + len(blocking)
        if have > want and len(sets.active) > 0:
            surplus = deletion_order(sets.active)[:min(have - want, len(sets.active))]
            await self._delete(key, job, surplus)
            sets.active = [p for p in sets.active if p not in surplus]
            return None
        if have >= want:
            return None
        wait = self.backoff.remaining(sets.succeeded, counted, now)
        if wait > 0:
            return wait
        await self._create(key, job, [None] * (want - have))
        return None

    async def _scale_indexed(self, key: str, job: Obj, spec: Obj, sets: PodSets, status: Obj,
                             adds: set[str], want: int, blocking: int, counted: list[Obj],
                             now: datetime) -> float | None:
        limit = int(spec.get("completions") or 0)
        done = parse_indexes(status.get("completedIndexes"), limit)
        seen: set[int] = set()
        surplus: list[Obj] = []
        for pod in sorted(sets.active, key=lambda p: meta(p).get("creationTimestamp") or ""):
            i = pod_index(pod)
            if i is None or i >= limit or i in done or i in seen:
                surplus.append(pod)        # no index, out of range, already done, duplicate
            else:
                seen.add(i)
        if surplus:
            await self._delete(key, job, surplus)
            sets.active = [p for p in sets.active if p not in surplus]
        if adds:
            return None                    # wait for the cache to show the pods just made
        have = len(sets.active) + blocking
        if have > want:
            extra = sorted(sets.active, key=lambda p: -(pod_index(p) or 0))[:have - want]
            await self._delete(key, job, extra)
            sets.active = [p for p in sets.active if p not in extra]
            return None
        free = [i for i in range(limit) if i not in done and i not in seen]
        todo = free[:max(0, want - have)]
        if not todo:
            return None
        wait = self.backoff.remaining(sets.succeeded, counted, now)
        if wait > 0:
            return wait
        await self._create(key, job, list(todo))
        return None

    async def _create(self, key: str, job: Obj, indexes: list[int | None]) -> None:
        await self.pod_control.create_batches(key, job, (job_pod(job, i)
                                                         for i in indexes[:_BURST]))

    async def _delete(self, key: str, job: Obj, victims: list[Obj]) -> None:
        await self.pod_control.delete(key, job, victims)

    # ---- the tracking finalizer (job_tracking) -------------------------------------------

    async def _track(self, job: Obj, pods: list[Obj], status: Obj) -> tuple[Obj, list[Obj]]:
        """Count the finished pods through the finalizer: stage (status written), remove the
        finalizers, move the staged UIDs into the counters. The Job and pods as now."""
        spec = job.get("spec") or {}
        policy = spec.get("podFailurePolicy")

        def counts(pod: Obj) -> bool:
            return (failure_verdict(policy, pod).action != "Ignore"
                    and not (spec.get("suspend") and is_terminating(pod)))
        flush(status, pods)                           # a flush a crash interrupted
        releasing = stage(status, pods, counts)
        if not releasing:
            return job, pods
        if status != (job.get("status") or {}):
            body = deep(job)
            body["status"] = status
            job = await self.client.update("jobs", body, subresource="status")
        fresh = {meta(p)["name"]: p for p in await untrack(self.client, releasing)}
        gone = {meta(p)["name"] for p in releasing} - set(fresh)
        pods = [fresh.get(meta(p)["name"], p) for p in pods if meta(p)["name"] not in gone]
        flush(status, pods)
        return job, pods

    async def _release(self, key: str, job: Obj | None) -> None:
        """Pods of a finished, deleted or vanished Job lose the finalizer (none is stuck)."""
        ns, _, name = key.partition("/")
        uid = meta(job).get("uid") if job is not None else None
        mine = [p for p in self.pods.list(namespace=ns) if tracked(p)
                and (ref := controller_ref(p)) is not None and ref.get("kind") == "Job"
                and ref.get("name") == name and (uid is None or ref.get("uid") == uid)]
        if mine:
            await untrack(self.client, mine)

    # ---- status and TTL --------------------------------------------------------------------

    async def _write_status(self, job: Obj, status: Obj) -> None:
        if status == (job.get("status") or {}):
            return
        body = deep(job)
        body["status"] = status
        try:
            await self.client.update("jobs", body, subresource="status")
        except NotFound:
            return

    async def _expire(self, job: Obj) -> None:
        """ttlSecondsAfterFinished: delete the finished Job (and, in the background, its
        pods) once it has been finished that long."""
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        if ttl is None:
            return
        status: dict[str, Any] = job.get("status") or {}
        finished = parse_rfc3339(status.get("completionTime")) or parse_rfc3339(
            (condition(job, "Failed") or {}).get("lastTransitionTime"))
        if finished is None:
            return
        left = float(ttl) - (self.clock.now() - finished).total_seconds()
        if left > 0:
            raise Requeue(left + 0.01)
        md = meta(job)
        try:
            await self.client.delete("jobs", md["name"], namespace=md.get("namespace"),
                                     propagation="Background",
                                     preconditions_uid=md.get("uid"))
        except NotFound:
            return
        self.log.info("%s: finished %ss ago, past ttlSecondsAfterFinished: deleted",
                      object_key(job), int(-left + float(ttl)))
