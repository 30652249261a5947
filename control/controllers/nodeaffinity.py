"""Pod-to-node predicates shared by the scheduler and the DaemonSet controller, as
kube-scheduler's nodeaffinity and v1helper do them: nodeSelector, required node affinity
(matchExpressions on labels with In/NotIn/Exists/DoesNotExist/Gt/Lt, and matchFields on
`metadata.name`, which the DaemonSet controller uses to pin a pod to its node), and taints
against tolerations. Pure functions on wire dicts, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["required_affinity_matches", "term_matches", "toleration_matches",
           "untolerated_taint"]

Obj = dict[str, Any]


def _requirement(req: Obj, value: str | None) -> bool:
    op = req.get("operator") or ""
    values = [str(v) for v in req.get("values") or []]
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt") and value is not None and len(values) == 1:
        try:
            have, bound = int(value), int(values[0])
        except ValueError:
            return False
        return have > bound if op == "Gt" else have < bound
    return False


def term_matches(term: Obj, node: Obj) -> bool:
    """One nodeSelectorTerm: all its requirements hold. An empty term matches no node."""
    md = node.get("metadata") or {}
    labels = md.get("labels") or {}
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    for req in exprs:
        if not _requirement(req, labels.get(req.get("key", ""))):
            return False
    for req in fields:
        if req.get("key") != "metadata.name" or not _requirement(req, md.get("name")):
            return False
    return True


def required_affinity_matches(pod_spec: Obj, node: Obj) -> bool:
    """nodeSelector and requiredDuringSchedulingIgnoredDuringExecution (any term)."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    for key, value in (pod_spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution")) or {}
    terms = required.get("nodeSelectorTerms") if isinstance(required, dict) else None
    if not terms:
        return True
    return any(term_matches(t, node) for t in terms if isinstance(t, dict))


def toleration_matches(tol: Obj, taint: Obj) -> bool:
    """v1.Toleration.ToleratesTaint."""
    if tol.get("effect") and tol.get("effect") != taint.get("effect"):
        return False
    op = tol.get("operator") or "Equal"
    if tol.get("key"):
        if tol.get("key") != taint.get("key"):
            return False
    elif op != "Exists":
        return False
    if op == "Exists":
        return True
    return (tol.get("value") or "") == (taint.get("value") or "")


def untolerated_taint(taints: Iterable[Obj], tolerations: Iterable[Obj],
                      effects: tuple[str, ...] = ("NoSchedule", "NoExecute")) -> Obj | None:
    """The first taint with one of `effects` that no toleration tolerates, or None."""
    tols = [t for t in tolerations if isinstance(t, dict)]
    for taint in taints:
        if taint.get("effect") not in effects:
            continue
        if not any(toleration_matches(t, taint) for t in tols):
            return taint
    return None
