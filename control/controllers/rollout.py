"""Pure rollout arithmetic for the Deployment controller, as Kubernetes does it: template
hashing (pod-template-hash), maxSurge/maxUnavailable resolution, how far the new ReplicaSet
may scale up and the old ones down at each step, revisions and conditions.

No I/O here: every function takes plain dicts and numbers, so the rolling update can be
checked step by step without a cluster.
"""

from __future__ import annotations

import json
import math
from typing import Any

from control.clientbase import Obj

__all__ = [
    "CHANGE_CAUSE",
    "DESIRED_REPLICAS",
    "HASH_LABEL",
    "MAX_REPLICAS",
    "REVISION",
    "REVISION_HISTORY",
    "is_scaling_event",
    "new_rs_target",
    "normalise_template",
    "old_rs_scale_down",
    "proportional_targets",
    "resolve_surge_unavailable",
    "revision_of",
    "same_template",
    "scaled_int_or_percent",
    "template_hash",
]

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
CHANGE_CAUSE = "kubernetes.io/change-cause"
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def _prune(value: Any) -> Any:
    """Drop None, empty dicts and empty lists, recursively (null and {} mean the same)."""
    if isinstance(value, dict):
        out = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def normalise_template(template: Obj | None) -> Obj:
    """The template without the pod-template-hash label and without empty values, so the
    Deployment's template and a ReplicaSet's copy compare and hash equal."""
    t = json.loads(json.dumps(template or {}))
    labels = (t.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    pruned = _prune(t)
    return pruned if isinstance(pruned, dict) else {}


def same_template(a: Obj | None, b: Obj | None) -> bool:
    return normalise_template(a) == normalise_template(b)


def _fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for byte in data:
        h ^= byte
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def template_hash(template: Obj | None, collision_count: int = 0) -> str:
    """A stable short hash of the normalised template (FNV-32a, safe alphabet), like
    Kubernetes' ComputeHash: equal templates give equal hashes across restarts."""
    data = json.dumps(normalise_template(template), sort_keys=True, separators=(",", ":"))
    if collision_count:
        data += str(collision_count)
    n = _fnv32a(data.encode())
    out = ""
    while True:
        out = _SAFE[n % len(_SAFE)] + out
        n //= len(_SAFE)
        if n == 0:
            break
    return out


def scaled_int_or_percent(value: int | str | None, total: int, *, round_up: bool,
                          default: int | str) -> int:
    if value is None:
        value = default
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.endswith("%"):
        pct = float(text[:-1])
        exact = pct * total / 100.0
        return int(math.ceil(exact) if round_up else math.floor(exact))
    return int(text)


def resolve_surge_unavailable(deployment: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as pod counts: surge rounds up, unavailable down; both zero
    is not allowed to stall a rollout, so unavailable becomes 1 (as in Kubernetes)."""
    spec = deployment.get("spec") or {}
    replicas = int(spec.get("replicas", 1))
    ru = ((spec.get("strategy") or {}).get("rollingUpdate")) or {}
    surge = scaled_int_or_percent(ru.get("maxSurge"), replicas, round_up=True, default="25%")
    unavail = scaled_int_or_percent(ru.get("maxUnavailable"), replicas, round_up=False,
                                    default="25%")
    if surge == 0 and unavail == 0:
        unavail = 1
    return surge, unavail


def _replicas(rs: Obj) -> int:
    return int((rs.get("spec") or {}).get("replicas", 0) or 0)


def _available(rs: Obj) -> int:
    return int((rs.get("status") or {}).get("availableReplicas", 0) or 0)


def new_rs_target(deployment: Obj, new_rs: Obj, all_rs: list[Obj]) -> int:
    """How many replicas the new ReplicaSet should have now (NewRSNewReplicas)."""
    want = int((deployment.get("spec") or {}).get("replicas", 1))
    current = _replicas(new_rs)
    if current >= want:
        return want
    surge, _ = resolve_surge_unavailable(deployment)
    total = sum(_replicas(rs) for rs in all_rs)
    room = want + surge - total
    if room <= 0:
        return current
    return current + min(room, want - current)


def old_rs_scale_down(deployment: Obj, new_rs: Obj | None, old_rs: list[Obj],
                      all_rs: list[Obj]) -> dict[str, int]:
    """New spec.replicas for old ReplicaSets this step (name -> replicas), never taking the
    available pods below replicas - maxUnavailable. Unhealthy old pods go first."""
    want = int((deployment.get("spec") or {}).get("replicas", 1))
    _, unavail = resolve_surge_unavailable(deployment)
    min_available = want - unavail
    new_unavailable = (_replicas(new_rs) - _available(new_rs)) if new_rs else 0
    total = sum(_replicas(rs) for rs in all_rs)
    budget = total - min_available - new_unavailable
    target = {meta_name(rs): _replicas(rs) for rs in old_rs}
    if budget <= 0 or not any(target.values()):
        return target
    ordered = sorted(old_rs, key=lambda rs: (revision_of(rs), meta_name(rs)))
    for rs in ordered:                      # 1. unhealthy (unavailable) replicas first
        if budget <= 0:
            break
        unhealthy = max(0, target[meta_name(rs)] - _available(rs))
        cut = min(unhealthy, budget)
        target[meta_name(rs)] -= cut
        budget -= cut
    available = sum(_available(rs) for rs in all_rs)
    spare = available - min_available
    for rs in ordered:                      # 2. then healthy ones, keeping min available
        if spare <= 0:
            break
        cut = min(target[meta_name(rs)], spare)
        target[meta_name(rs)] -= cut
        spare -= cut
    return target


def meta_name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def revision_of(obj: Obj) -> int:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    try:
        return int(annotations.get(REVISION, "0"))
    except ValueError:
        return 0


def _annotated_int(rs: Obj, key: str) -> int | None:
    value = ((rs.get("metadata") or {}).get("annotations") or {}).get(key)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def is_scaling_event(deployment: Obj, active: list[Obj]) -> bool:
    """replicas changed since the active ReplicaSets were last sized (desired-replicas)."""
    want = int((deployment.get("spec") or {}).get("replicas", 1))
    return any(_annotated_int(rs, DESIRED_REPLICAS) not in (None, want) for rs in active)


def proportional_targets(deployment: Obj, active: list[Obj]) -> dict[str, int]:
    """Kubernetes' proportional scaling: when replicas change while several ReplicaSets are
    active, the difference is shared in proportion to their sizes (largest first, leftover
    to the largest), so a paused or stuck rollout keeps its old/new ratio."""
    spec = deployment.get("spec") or {}
    want = int(spec.get("replicas", 1))
    rolling = (spec.get("strategy") or {}).get("type") != "Recreate"
    allowed = want + (resolve_surge_unavailable(deployment)[0] if rolling else 0)
    current = sum(_replicas(rs) for rs in active)
    to_add = allowed - current
    out = {meta_name(rs): _replicas(rs) for rs in active}
    if to_add == 0 or not active:
        return out
    ordered = sorted(active, key=lambda rs: (-_replicas(rs), -revision_of(rs)))
    added = 0
    for rs in ordered:
        old_allowed = _annotated_int(rs, MAX_REPLICAS) or current
        fraction = round(_replicas(rs) * allowed / old_allowed) - _replicas(rs) \
            if old_allowed else 0
        room = to_add - added
        share = min(fraction, room) if to_add > 0 else max(fraction, room)
        out[meta_name(rs)] += share
        added += share
    first = meta_name(ordered[0])
    out[first] = max(0, out[first] + to_add - added)
    return out
