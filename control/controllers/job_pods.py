"""What the Job controller knows about pods, as pure functions: the pod it creates from a Job
(template labels, the completion index of an Indexed Job as annotation, label, hostname and
`JOB_COMPLETION_INDEX`), how it sorts the pods it owns (active, succeeded, failed,
terminating), when a pod finished, and the `completedIndexes` notation ("0-2,4").

No I/O here: job.py reads the informer caches and writes; these decide.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from control.clientbase import Obj
from control.clock import parse_rfc3339
from control.controllers.job_tracking import TRACKING_FINALIZER
from control.controllers.util import deep, is_pod_ready, is_terminating, meta, owner_ref
from control.models.batchdefaults import CONTROLLER_UID, JOB_NAME
from control.models.selectors import LabelSelector, selector_from_labels, selector_from_spec

__all__ = ["INDEX_ANNOTATION", "INDEX_LABEL", "PodSets", "finish_time", "format_indexes",
           "job_pod", "job_selector", "parse_indexes", "pod_index", "sort_pods"]

INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
INDEX_ENV = "JOB_COMPLETION_INDEX"


def job_pod(job: Obj, index: int | None) -> Obj:
    """A new pod of `job` (for completion `index` if the Job is Indexed), owned by it."""
    jm = meta(job)
    template = deep((job.get("spec") or {}).get("template") or {})
    tm = template.get("metadata") or {}
    spec: dict[str, Any] = template.get("spec") or {}
    labels = dict(tm.get("labels") or {})
    if not (job.get("spec") or {}).get("selector"):    # stored before selectors were generated
        labels.update(job_selector_labels(job))
    annotations = dict(tm.get("annotations") or {})
    prefix = f"{jm['name']}-"
    if index is not None:
        annotations[INDEX_ANNOTATION] = str(index)
        labels[INDEX_LABEL] = str(index)
        prefix = f"{jm['name']}-{index}-"
        if not spec.get("hostname"):
            spec["hostname"] = f"{jm['name']}-{index}"
        env_var = {"name": INDEX_ENV, "valueFrom": {"fieldRef": {
            "apiVersion": "v1", "fieldPath": f"metadata.annotations['{INDEX_ANNOTATION}']"}}}
        for group in ("initContainers", "containers"):
            for c in spec.get(group) or []:
                env = [e for e in c.get("env") or [] if e.get("name") != INDEX_ENV]
                c["env"] = [*env, env_var]
    pod_meta: dict[str, Any] = {"generateName": prefix, "namespace": jm["namespace"],
                                "labels": labels, "ownerReferences": [owner_ref(job)]}
    if annotations:
        pod_meta["annotations"] = annotations
    # the tracking finalizer: the pod stays until the Job counted it (job_tracking)
    pod_meta["finalizers"] = [*(tm.get("finalizers") or []), TRACKING_FINALIZER]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": spec}


def job_selector_labels(job: Obj) -> dict[str, str]:
    """The labels the API would have generated for `job` (see batchdefaults)."""
    return {CONTROLLER_UID: str(meta(job).get("uid") or ""),
            JOB_NAME: str(meta(job).get("name") or "")}


def job_selector(job: Obj) -> LabelSelector:
    """The Job's selector; a Job without one (stored before knet generated them) selects by
    its uid label, never everything."""
    spec = (job.get("spec") or {}).get("selector")
    return selector_from_spec(spec) if spec else selector_from_labels(
        {CONTROLLER_UID: str(meta(job).get("uid") or "")})


def pod_index(pod: Obj) -> int | None:
    """The completion index of an Indexed Job's pod (annotation, then label); None if absent
    or not a number."""
    md = meta(pod)
    for source in (md.get("annotations") or {}, md.get("labels") or {}):
        value = source.get(INDEX_ANNOTATION)
        if value is not None and str(value).isdigit():
            return int(value)
    return None


def _phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


@dataclass
class PodSets:
    """A Job's pods by state. `terminating`: being deleted, not yet finished."""

    active: list[Obj] = field(default_factory=list)
    succeeded: list[Obj] = field(default_factory=list)
    failed: list[Obj] = field(default_factory=list)
    terminating: list[Obj] = field(default_factory=list)

    @property
    def ready(self) -> int:
        return sum(1 for p in self.active if is_pod_ready(p))

    def restarts(self) -> int:
        """Container restarts of the active pods (restartPolicy OnFailure's failures)."""
        return sum(int(c.get("restartCount") or 0) for p in self.active
                   for c in (p.get("status") or {}).get("containerStatuses") or [])


def sort_pods(pods: Iterable[Obj]) -> PodSets:
    out = PodSets()
    for pod in pods:
        phase = _phase(pod)
        if phase == "Succeeded":
            out.succeeded.append(pod)
        elif phase == "Failed":
            out.failed.append(pod)
        elif is_terminating(pod):
            out.terminating.append(pod)
        else:
            out.active.append(pod)
    return out


def finish_time(pod: Obj, default: datetime) -> datetime:
    """When a finished pod finished: its last container's finishedAt, else `default`."""
    times = [parse_rfc3339(((c.get("state") or {}).get("terminated") or {}).get("finishedAt"))
             for c in (pod.get("status") or {}).get("containerStatuses") or []]
    found = [t for t in times if t is not None]
    return max(found) if found else default


def format_indexes(indexes: Iterable[int]) -> str:
    """Sorted indexes in Kubernetes' interval notation: {0,1,2,4} -> "0-2,4"."""
    out: list[str] = []
    run: list[int] = []
    for i in sorted(set(indexes)):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [i]
    if run:
        out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(out)


def parse_indexes(text: str | None, limit: int) -> set[int]:
    """The inverse of format_indexes, keeping indexes below `limit`; junk is skipped."""
    out: set[int] = set()
    for part in (text or "").split(","):
        lo, _, hi = part.strip().partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            continue
        out.update(i for i in range(int(lo), int(hi or lo) + 1) if i < limit)
    return out
