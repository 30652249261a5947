"""A Deployment's status from its ReplicaSets: counts, and the Available and Progressing
conditions with the reasons `kubectl rollout status` and `describe` read.

Pure: `compute_status(deployment, new_rs, old_rs, now=..., created=...)`. Conditions keep
their lastTransitionTime while their status does not change.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from control.clientbase import Obj
from control.clock import parse_rfc3339, rfc3339
from control.controllers import rollout as ro

__all__ = ["compute_status", "deadline_left", "is_complete"]


def _st(rs: Obj | None, field: str) -> int:
    return int(((rs or {}).get("status") or {}).get(field, 0) or 0)


def is_complete(d: Obj, status: Obj) -> bool:
    want = int((d.get("spec") or {}).get("replicas", 1))
    return bool(status.get("updatedReplicas", 0) == want and status.get("replicas", 0) == want
                and status.get("availableReplicas", 0) == want)


def compute_status(d: Obj, new_rs: Obj | None, old_rs: list[Obj], *, now: datetime,
                   created: bool = False, observed_generation: int | None = None) -> Obj:
    spec = d.get("spec") or {}
    want = int(spec.get("replicas", 1))
    old_status = d.get("status") or {}
    all_rs = old_rs + ([new_rs] if new_rs is not None else [])
    available = sum(_st(rs, "availableReplicas") for rs in all_rs)
    status: dict[str, Any] = {
        "observedGeneration": observed_generation if observed_generation is not None
        else (d.get("metadata") or {}).get("generation", 1),
        "replicas": sum(_st(rs, "replicas") for rs in all_rs),
        "updatedReplicas": _st(new_rs, "replicas"),
        "readyReplicas": sum(_st(rs, "readyReplicas") for rs in all_rs),
        "availableReplicas": available,
        "unavailableReplicas": max(want - available, 0),
    }
    if old_status.get("collisionCount"):
        status["collisionCount"] = old_status["collisionCount"]
    for k in ("readyReplicas", "availableReplicas", "unavailableReplicas"):
        if not status[k] and k not in old_status:   # like Kubernetes: omit zero counts
            del status[k]
    _, unavail = ro.resolve_surge_unavailable(d)
    conditions = {c.get("type"): dict(c) for c in old_status.get("conditions") or []}
    if available >= want - unavail:
        avail = ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
    else:
        avail = ("False", "MinimumReplicasUnavailable",
                 "Deployment does not have minimum availability.")
    _set(conditions, "Available", avail, now)
    progressing = _progressing(d, new_rs, status, old_status, conditions.get("Progressing"),
                               created, now)
    if progressing is not None:
        _set(conditions, "Progressing", progressing[0], now, touch=progressing[1])
    order = {"Available": 0, "Progressing": 1}
    status["conditions"] = sorted(conditions.values(),
                                  key=lambda c: order.get(str(c.get("type")), 9))
    return status


def _progressing(d: Obj, new_rs: Obj | None, status: Obj, old_status: Obj,
                 current: Obj | None, created: bool,
                 now: datetime) -> tuple[tuple[str, str, str], bool] | None:
    """The Progressing condition's (status, reason, message) and whether to touch its
    lastUpdateTime even if unchanged (progress was made), or None to leave it."""
    name = ((new_rs or {}).get("metadata") or {}).get("name", "")
    if (d.get("spec") or {}).get("paused"):
        return ("Unknown", "DeploymentPaused", "Deployment is paused"), False
    if current is not None and current.get("reason") == "DeploymentPaused":
        return ("True", "DeploymentResumed", "Deployment is resumed"), False
    if new_rs is not None and is_complete(d, status):
        return ("True", "NewReplicaSetAvailable",
                f'ReplicaSet "{name}" has successfully progressed.'), False
    if created and new_rs is not None:
        return ("True", "NewReplicaSetCreated", f'Created new replica set "{name}"'), False
    keys = ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
    moved = any(status.get(k, 0) != old_status.get(k, 0) for k in keys)
    updated = ("True", "ReplicaSetUpdated", f'ReplicaSet "{name}" is progressing.')
    if new_rs is not None and moved:
        return updated, True
    if deadline_left(d, current, now) == 0.0:
        return ("False", "ProgressDeadlineExceeded",
                f'ReplicaSet "{name}" has timed out progressing.'), False
    if new_rs is not None and (current is None
                               or current.get("reason") == "NewReplicaSetAvailable"):
        return updated, False
    return None


def deadline_left(d: Obj, progressing: Obj | None, now: datetime) -> float | None:
    """Seconds until spec.progressDeadlineSeconds (default 600) passes without progress,
    0.0 if it has, None if no deadline runs (no rollout in progress)."""
    if (progressing is None or progressing.get("status") != "True"
            or progressing.get("reason") == "NewReplicaSetAvailable"):
        return None
    since = parse_rfc3339(progressing.get("lastUpdateTime"))
    if since is None:
        return None
    limit = float((d.get("spec") or {}).get("progressDeadlineSeconds") or 600)
    return max(0.0, limit - (now - since).total_seconds())


def _set(conditions: dict[Any, Obj], ctype: str, value: tuple[str, str, str],
         now: datetime, *, touch: bool = False) -> None:
    status, reason, message = value
    ts = rfc3339(now)
    cur = conditions.get(ctype)
    same = cur is not None and (cur.get("status"), cur.get("reason"), cur.get("message")) == value
    if same and not touch:
        return
    transition = ts if cur is None or cur.get("status") != status else cur.get(
        "lastTransitionTime", ts)
    conditions[ctype] = {"type": ctype, "status": status, "lastUpdateTime": ts,
                         "lastTransitionTime": transition, "reason": reason,
                         "message": message}
