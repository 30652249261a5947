"""CronJob (batch/v1): create a Job at each scheduled time, as the CronJob controller v2 does.

One level-triggered reconcile per CronJob, driven by the clock: bring `status.active` up to
date from the Jobs it owns (finished ones leave with a `SawCompletedJob` Event and move
lastSuccessfulTime; vanished ones leave with `MissingJob`), delete finished Jobs beyond the
history limits, then, unless suspended, find the most recent scheduled time that has passed
since lastScheduleTime (in `spec.timeZone`, UTC by default; at most startingDeadlineSeconds
late) and start its Job `NAME-<minutes since the epoch>`, honouring concurrencyPolicy. The
name makes a start idempotent: a reconcile that runs twice finds the Job it already made.
It always asks to be looked at again at the next scheduled time.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Any

from control.clientbase import Client, Obj
from control.clock import Clock, parse_rfc3339, rfc3339
from control.controllers.base import Controller, Requeue
from control.controllers.events import EventRecorder
from control.controllers.job_policy import has_condition
from control.controllers.util import controller_ref, deep, is_terminating, meta, owner_ref
from control.errors import AlreadyExists, NotFound
from control.informer import Informer, object_key
from control.models.cronschedule import Schedule, ScheduleError, load_zone, parse_schedule

__all__ = ["SCHEDULED_ANNOTATION", "CronJobController", "job_from_cronjob", "job_name"]

SCHEDULED_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"
_MAX_MISSED = 100
_SCAN_LIMIT = 100_000         # fire times looked at per reconcile (an old CronJob every second)


def job_name(cronjob: Obj, scheduled: datetime) -> str:
    """`NAME-<scheduled time in minutes since the epoch>`, as upstream names them."""
    return f"{meta(cronjob)['name']}-{int(scheduled.timestamp()) // 60}"


def _stamp(dt: datetime) -> str:
    """Go's time.RFC3339 in the schedule's zone: 2026-01-01T09:00:00+01:00 (Z for UTC)."""
    text = dt.replace(microsecond=0).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def job_from_cronjob(cronjob: Obj, scheduled: datetime) -> Obj:
    """The Job a CronJob starts for `scheduled`: its jobTemplate, named, annotated, owned."""
    cm = meta(cronjob)
    template = deep((cronjob.get("spec") or {}).get("jobTemplate") or {})
    tm = template.get("metadata") or {}
    annotations = {**(tm.get("annotations") or {}), SCHEDULED_ANNOTATION: _stamp(scheduled)}
    md: dict[str, Any] = {"name": job_name(cronjob, scheduled), "namespace": cm["namespace"],
                          "annotations": annotations, "ownerReferences": [owner_ref(cronjob)]}
    if tm.get("labels"):
        md["labels"] = dict(tm["labels"])
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": md,
            "spec": template.get("spec") or {}}


def _finished(job: Obj) -> str | None:
    for ctype in ("Complete", "Failed"):
        if has_condition(job, ctype):
            return ctype
    return None


def _ref(job: Obj) -> dict[str, Any]:
    m = meta(job)
    return {"apiVersion": "batch/v1", "kind": "Job", "name": m.get("name"),
            "namespace": m.get("namespace"), "uid": m.get("uid"),
            "resourceVersion": m.get("resourceVersion")}


class CronJobController(Controller):
    name = "cronjob"

    def __init__(self, client: Client, *, clock: Clock, recorder: EventRecorder,
                 cronjobs: Informer, jobs: Informer, workers: int = 1) -> None:
        super().__init__(client, clock=clock, workers=workers)
        self.recorder = recorder
        self.cronjobs = cronjobs
        self.jobs = jobs
        cronjobs.add_handler(on_add=self._changed, on_delete=self._changed,
                             on_update=lambda old, new: self._changed(new))
        jobs.add_handler(on_add=self._job_changed, on_delete=self._job_changed,
                         on_update=lambda old, new: self._job_changed(new))

    def _changed(self, cronjob: Obj) -> None:
        self.enqueue(object_key(cronjob))

    def _job_changed(self, job: Obj) -> None:
        ref = controller_ref(job)
        if ref is not None and ref.get("kind") == "CronJob":
            self.enqueue(f"{meta(job).get('namespace', '')}/{ref.get('name')}")

    async def reconcile(self, key: str) -> None:
        cj = self.cronjobs.get(key)
        if cj is None:
            return
        uid = meta(cj).get("uid")
        jobs = [j for j in self.jobs.list(namespace=meta(cj).get("namespace"))
                if (controller_ref(j) or {}).get("uid") == uid]
        status = deep(cj.get("status") or {})
        await self._sync_active(cj, jobs, status)
        await self._cleanup(cj, jobs)
        wait = None
        if not is_terminating(cj) and not (cj.get("spec") or {}).get("suspend"):
            wait = await self._schedule(cj, jobs, status)
        if status != (cj.get("status") or {}):
            body = deep(cj)
            body["status"] = status
            try:
                await self.client.update("cronjobs", body, subresource="status")
            except NotFound:
                return
        if wait is not None:
            raise Requeue(max(wait, 0.0) + 0.1)

    # ---- status.active ---------------------------------------------------------------------

    async def _sync_active(self, cj: Obj, jobs: list[Obj], status: Obj) -> None:
        by_uid = {meta(j).get("uid"): j for j in jobs}
        active: list[Obj] = []
        for ref in status.get("active") or []:
            job = by_uid.get(ref.get("uid"))
            if job is None:
                job = await self._lookup(ref)       # the cache may lag behind our create
                if job is None:
                    await self.recorder.record(cj, "Normal", "MissingJob",
                                               f"Active job went missing: {ref.get('name')}")
                    continue
            if _finished(job) is None:
                active.append(ref)
        known = {r.get("uid") for r in active} | {r.get("uid") for r in status.get("active")
                                                    or []}
        for job in jobs:
            done = _finished(job)
            if done is None and meta(job).get("uid") not in known and not is_terminating(job):
                active.append(_ref(job))            # e.g. `kubectl create job --from=cronjob/x`
            if done is not None and meta(job).get("uid") in known:
                await self.recorder.record(cj, "Normal", "SawCompletedJob",
                                           f"Saw completed job: {meta(job).get('name')}, "
                                           f"status: {done}")
            completed = (job.get("status") or {}).get("completionTime")
            if done == "Complete" and completed:
                last = parse_rfc3339(status.get("lastSuccessfulTime"))
                when = parse_rfc3339(completed)
                if when is not None and (last is None or when > last):
                    status["lastSuccessfulTime"] = completed
        if active:
            status["active"] = active
        else:
            status.pop("active", None)

    async def _lookup(self, ref: Obj) -> Obj | None:
        try:
            job = await self.client.get("jobs", str(ref.get("name")),
                                        namespace=ref.get("namespace"))
        except NotFound:
            return None
        return job if meta(job).get("uid") == ref.get("uid") else None

    async def _cleanup(self, cj: Obj, jobs: list[Obj]) -> None:
        spec = cj.get("spec") or {}
        for outcome, key, default in (("Complete", "successfulJobsHistoryLimit", 3),
                                      ("Failed", "failedJobsHistoryLimit", 1)):
            limit = spec.get(key, default)
            if limit is None:
                continue
            done = [j for j in jobs if _finished(j) == outcome and not is_terminating(j)]
            done.sort(key=lambda j: ((j.get("status") or {}).get("startTime")
                                     or meta(j).get("creationTimestamp") or ""))
            for job in done[:max(0, len(done) - int(limit))]:
                await self._delete_job(cj, job)

    async def _delete_job(self, cj: Obj, job: Obj) -> None:
        m = meta(job)
        try:
            await self.client.delete("jobs", m["name"], namespace=m.get("namespace"),
                                     propagation="Background", preconditions_uid=m.get("uid"))
        except NotFound:
            return
        await self.recorder.record(cj, "Normal", "SuccessfulDelete", f"Deleted job {m['name']}")

    # ---- scheduling ------------------------------------------------------------------------

    def _parse(self, cj: Obj) -> tuple[Schedule, tzinfo]:
        spec = cj.get("spec") or {}
        sched = parse_schedule(str(spec.get("schedule") or ""))
        zone: tzinfo = load_zone(str(spec["timeZone"])) if spec.get("timeZone") else UTC
        return sched, zone

    async def _schedule(self, cj: Obj, jobs: list[Obj], status: Obj) -> float | None:
        """Start the Job of the most recent missed time, if any; seconds to the next one."""
        try:
            sched, zone = self._parse(cj)
        except ScheduleError as exc:
            await self.recorder.record(cj, "Warning", "InvalidSchedule",
                                       f"invalid schedule: {(cj.get('spec') or {}).get('schedule')}"
                                       f" : {exc}")
            return None
        except ValueError as exc:
            await self.recorder.record(cj, "Warning", "UnknownTimeZone", str(exc))
            return None
        now = self.clock.now()
        recent, missed, upcoming = self._missed(cj, sched, zone, now)
        wait = (upcoming - now).total_seconds()
        if missed > _MAX_MISSED:
            await self.recorder.record(
                cj, "Warning", "TooManyMissedTimes",
                f"too many missed start times: {missed}. Set or decrease "
                ".spec.startingDeadlineSeconds or check clock skew")
        if recent is None:
            return wait
        spec = cj.get("spec") or {}
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None and (now - recent).total_seconds() > int(deadline):
            await self.recorder.record(cj, "Warning", "MissSchedule",
                                       f"Missed scheduled time to start a job: {_stamp(recent)}")
            return wait
        name = job_name(cj, recent)
        if any(r.get("name") == name for r in status.get("active") or []) or any(
                meta(j).get("name") == name for j in jobs):
            status["lastScheduleTime"] = rfc3339(recent)
            return wait
        policy = spec.get("concurrencyPolicy", "Allow")
        if policy == "Forbid" and status.get("active"):
            await self.recorder.record(cj, "Normal", "JobAlreadyActive",
                                       "Not starting job because prior execution is running "
                                       "and concurrency policy is Forbid")
            return wait
        if policy == "Replace":
            for ref in list(status.get("active") or []):
                job = next((j for j in jobs if meta(j).get("uid") == ref.get("uid")), None)
                await self._delete_job(cj, job or {"metadata": ref})
            status.pop("active", None)
        await self._start(cj, recent, status)
        return wait

    def _missed(self, cj: Obj, sched: Schedule, zone: tzinfo,
                now: datetime) -> tuple[datetime | None, int, datetime]:
        """(most recent fire time <= now, how many were missed, the next one after now)."""
        status = cj.get("status") or {}
        spec = cj.get("spec") or {}
        earliest = (parse_rfc3339(status.get("lastScheduleTime"))
                    or parse_rfc3339(meta(cj).get("creationTimestamp")) or now)
        if spec.get("startingDeadlineSeconds") is not None:
            floor = now.timestamp() - int(spec["startingDeadlineSeconds"])
            if floor > earliest.timestamp():
                earliest = datetime.fromtimestamp(floor, UTC)
        recent: datetime | None = None
        missed = 0
        t = sched.next_after(earliest.astimezone(zone))
        while t <= now and missed < _SCAN_LIMIT:
            recent, missed = t, missed + 1
            t = sched.next_after(t)
        return recent, missed, t

    async def _start(self, cj: Obj, scheduled: datetime, status: Obj) -> None:
        body = job_from_cronjob(cj, scheduled)
        try:
            job = await self.client.create("jobs", body, namespace=meta(cj)["namespace"])
        except AlreadyExists:       # made by an earlier run whose status write was lost
            status["lastScheduleTime"] = rfc3339(scheduled)
            return
        except Exception as exc:
            await self.recorder.record(cj, "Warning", "FailedCreate",
                                       f"Error creating job: {exc}")
            raise
        await self.recorder.record(cj, "Normal", "SuccessfulCreate",
                                   f"Created job {meta(job)['name']}")
        status["active"] = [*(status.get("active") or []), _ref(job)]
        status["lastScheduleTime"] = rfc3339(scheduled)
