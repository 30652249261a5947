"""The Job tracking finalizer, as the Job controller has used it since Kubernetes 1.26: every
pod a Job creates carries `batch.kubernetes.io/job-tracking`, so the pod object cannot go away
before the controller has counted it.

Counting is a two-step flush that survives a crash in between. A tracked pod that finished
(Succeeded, or Failed and not ignored by podFailurePolicy nor stopped by a suspension) has
its UID staged in `status.uncountedTerminatedPods` (written first), then loses its finalizer;
staged UIDs whose pods carry no finalizer any more (or are gone) are then added to
`status.succeeded` / `status.failed` and unstaged. A pod deleted before it finished loses its
finalizer uncounted (knet's Job does not count pods it was not told the end of; upstream
counts them as failed). Pods of a Job that finished or was deleted lose it too, so nothing
is left stuck in Terminating.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from control.clientbase import Client, Obj
from control.controllers.util import is_terminating, meta
from control.errors import ApiError, NotFound

__all__ = ["TRACKING_FINALIZER", "flush", "stage", "tracked", "untrack"]

TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"


def tracked(pod: Obj) -> bool:
    return TRACKING_FINALIZER in (meta(pod).get("finalizers") or [])


def _uncounted(status: Obj) -> Obj:
    unc = status.get("uncountedTerminatedPods")
    if not isinstance(unc, dict):
        unc = status["uncountedTerminatedPods"] = {}
    return unc


def stage(status: Obj, pods: Iterable[Obj], counts_as_failure: Callable[[Obj], bool]
          ) -> list[Obj]:
    """Stage the finished tracked pods' UIDs; the pods whose finalizer may now go (those and
    the tracked pods being deleted before they finished)."""
    unc = _uncounted(status)
    out = []
    for pod in pods:
        if not tracked(pod):
            continue
        phase, uid = (pod.get("status") or {}).get("phase"), str(meta(pod).get("uid"))
        if phase == "Succeeded":
            bucket = "succeeded"
        elif phase == "Failed":
            bucket = "failed" if counts_as_failure(pod) else ""
        elif is_terminating(pod):
            bucket = ""
        else:
            continue
        if bucket and uid not in (unc.get(bucket) or []):
            unc[bucket] = [*(unc.get(bucket) or []), uid]
        out.append(pod)
    return out


def flush(status: Obj, pods: Iterable[Obj]) -> bool:
    """Count the staged UIDs whose pods no longer carry the finalizer; True if any moved."""
    still = {str(meta(p).get("uid")) for p in pods if tracked(p)}
    unc = _uncounted(status)
    moved = False
    for bucket in ("succeeded", "failed"):
        staged = [u for u in unc.get(bucket) or [] if u in still]
        done = len(unc.get(bucket) or []) - len(staged)
        if done:
            status[bucket] = int(status.get(bucket) or 0) + done
            moved = True
        if staged:
            unc[bucket] = staged
        else:
            unc.pop(bucket, None)
    return moved


async def untrack(client: Client, pods: Iterable[Obj]) -> list[Obj]:
    """Remove the finalizer from each pod (a JSON patch tested against the index, so a
    concurrent change of the list fails instead of removing another finalizer); the pods
    as they are now (those that vanished meanwhile left out)."""
    out = []
    for pod in pods:
        md = meta(pod)
        for attempt in (1, 2):
            finalizers = list(md.get("finalizers") or [])
            if TRACKING_FINALIZER not in finalizers:
                out.append(pod)
                break
            i = finalizers.index(TRACKING_FINALIZER)
            patch = [{"op": "test", "path": f"/metadata/finalizers/{i}",
                      "value": TRACKING_FINALIZER},
                     {"op": "remove", "path": f"/metadata/finalizers/{i}"}]
            try:
                out.append(await client.patch("pods", md["name"], patch, patch_type="json",
                                              namespace=md.get("namespace")))
                break
            except NotFound:
                break
            except ApiError:
                if attempt == 2:
                    raise
                try:           # the list changed under us: look again, once
                    pod = await client.get("pods", md["name"], namespace=md.get("namespace"))
                except NotFound:
                    break
                md = meta(pod)
    return out
