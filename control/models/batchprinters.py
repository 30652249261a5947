"""`kubectl get jobs` and `kubectl get cronjobs` columns and cells, ported from Kubernetes'
printers.go (printJob, printCronJob): STATUS from the conditions (Complete, Failed,
Terminating, Suspended, FailureTarget, SuccessCriteriaMet, else Running), COMPLETIONS as
`succeeded/completions` (`n/1 of P` for a work queue), DURATION from startTime to
completionTime (or to now while running).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from control.models import printers as p

__all__ = ["BATCH_COLUMNS", "BATCH_PRINTERS"]

Obj = dict[str, Any]
_NAME = ("Name", "string", 0, ("Name must be unique within a namespace. Is required when "
         "creating resources, although some resources may allow a client to request the "
         "generation of an appropriate name automatically. Cannot be updated."))
_AGE = ("Age", "string", 0, ("CreationTimestamp is a timestamp representing the server time "
        "when this object was created."))
_WIDE = [("Containers", "string", 1, "Names of each container in the template."),
         ("Images", "string", 1, "Images referenced by each container in the template.")]
BATCH_COLUMNS: dict[str, list[tuple[str, str, int, str]]] = {
    "jobs": [_NAME, ("Status", "string", 0, "Status of the job."),
             ("Completions", "string", 0, "The number of pods which reached phase Succeeded."),
             ("Duration", "string", 0, "Time required to complete the job."), _AGE, *_WIDE,
             ("Selector", "string", 1, ("A label query over pods that should match the pod "
                                       "count."))],
    "cronjobs": [_NAME,
                 ("Schedule", "string", 0, ("The schedule in Cron format, see "
                                           "https://en.wikipedia.org/wiki/Cron.")),
                 ("Timezone", "string", 0, ("The time zone name for the given schedule, see "
                                           "https://en.wikipedia.org/wiki/List_of_tz_database_"
                                           "time_zones.")),
                 ("Suspend", "boolean", 0, ("This flag tells the controller to suspend "
                                           "subsequent executions, it does not apply to "
                                           "already started executions.")),
                 ("Active", "integer", 0, "A list of pointers to currently running jobs."),
                 ("Last Schedule", "string", 0, ("Information when was the last time the job "
                                                "was successfully scheduled.")),
                 _AGE, *_WIDE,
                 ("Selector", "string", 1, ("A label query over pods that should match the pod "
                                           "count."))],
}


def _has(obj: Obj, ctype: str) -> bool:
    return any(c.get("type") == ctype and c.get("status") == "True"
               for c in p.dig(obj, "status", "conditions") or [])


def job_status(job: Obj) -> str:
    for ctype, shown in (("Complete", "Complete"), ("Failed", "Failed")):
        if _has(job, ctype):
            return shown
    if p.dig(job, "metadata", "deletionTimestamp"):
        return "Terminating"
    for ctype in ("Suspended", "FailureTarget", "SuccessCriteriaMet"):
        if _has(job, ctype):
            return ctype
    return "Running"


def _completions(job: Obj) -> str:
    spec, succeeded = job.get("spec") or {}, p.dig(job, "status", "succeeded") or 0
    if spec.get("completions") is not None:
        return f"{succeeded}/{spec['completions']}"
    parallelism = spec.get("parallelism")
    if isinstance(parallelism, int) and parallelism > 1:
        return f"{succeeded}/1 of {parallelism}"
    return f"{succeeded}/1"


def _duration(job: Obj, now: datetime) -> str:
    start = p.parse_time(p.dig(job, "status", "startTime"))
    if start is None:
        return ""
    end = p.parse_time(p.dig(job, "status", "completionTime")) or now
    return p.human_duration((end - start).total_seconds())


def job_cells(job: Obj, now: datetime) -> list[Any]:
    names, images = p.containers_images(job)
    return [p.dig(job, "metadata", "name"), job_status(job), _completions(job),
            _duration(job, now), p.age(p.dig(job, "metadata", "creationTimestamp"), now),
            names, images, p.selector_string(p.dig(job, "spec", "selector"))]


def cronjob_cells(cj: Obj, now: datetime) -> list[Any]:
    spec = cj.get("spec") or {}
    template = {"spec": p.dig(cj, "spec", "jobTemplate", "spec") or {}}
    names, images = p.containers_images(template)
    last = p.dig(cj, "status", "lastScheduleTime")
    suspend = spec.get("suspend")
    return [p.dig(cj, "metadata", "name"), spec.get("schedule") or "",
            spec.get("timeZone") or "<none>",
            "<unset>" if suspend is None else str(bool(suspend)),
            len(p.dig(cj, "status", "active") or []),
            p.age(last, now) if last else "<none>",
            p.age(p.dig(cj, "metadata", "creationTimestamp"), now), names, images,
            p.selector_string(p.dig(cj, "spec", "jobTemplate", "spec", "selector"))]


BATCH_PRINTERS = {"jobs": job_cells, "cronjobs": cronjob_cells}
