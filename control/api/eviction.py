"""The Eviction API, `POST pods/NAME/eviction`, as kube-apiserver's eviction REST storage:
a pod that is terminal, Pending or already terminating is deleted at once; otherwise the one
PodDisruptionBudget matching it (two or more is a 500, as upstream) must allow a disruption:
its status is decremented (`disruptionsAllowed`, the pod recorded in `disruptedPods`) before
the pod is deleted, or the answer is 429 TooManyRequests "Cannot evict pod as it would violate
the pod's disruption budget." with a DisruptionBudget cause, which `kubectl drain` retries.
A not-ready pod is evicted without spending the budget when the budget is already met
(unhealthyPodEvictionPolicy IfHealthyBudget, the default) or always (AlwaysAllow).
Evicted pods get the condition DisruptionTarget=True (reason EvictionByEvictionAPI) first.
"""

from __future__ import annotations

from typing import Any

from control.api.meta import rfc3339
from control.api.objects import ObjectService
from control.errors import (
    BadRequest,
    Cause,
    Conflict,
    Forbidden,
    Internal,
    NotFound,
    TooManyRequests,
)
from control.models.selectors import selector_from_spec

__all__ = ["evict"]

Obj = dict[str, Any]
CAUSE = "DisruptionBudget"
MESSAGE = "Cannot evict pod as it would violate the pod's disruption budget."
_MAX_DISRUPTED = 2000
_RETRIES = 5


def _ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _can_ignore_pdb(pod: Obj) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return phase in ("Succeeded", "Failed", "Pending") or \
        bool(pod["metadata"].get("deletionTimestamp"))


async def _budgets(objects: ObjectService, pod: Obj) -> list[Obj]:
    labels = pod["metadata"].get("labels") or {}
    out = []
    for pdb in (await objects.list("poddisruptionbudgets",
                                   namespace=pod["metadata"]["namespace"])).items:
        sel = (pdb.get("spec") or {}).get("selector")
        if sel is not None and selector_from_spec(sel).matches(labels):
            out.append(pdb)
    return out


async def evict(objects: ObjectService, *, namespace: str, name: str, body: Any,
                dry_run: bool = False) -> Obj:
    """Evict pod namespace/name as `body` (a policy/v1 Eviction) asks; returns the Status."""
    body = body if isinstance(body, dict) else {}
    given = (body.get("metadata") or {}).get("name")
    if given and given != name:
        raise BadRequest(f"name in URL does not match name in Eviction object: {name} vs "
                         f"{given}")
    opts = body.get("deleteOptions") or {}
    dry_run = dry_run or bool(opts.get("dryRun"))
    pod = await objects.get("pods", name, namespace=namespace)
    if not _can_ignore_pdb(pod):
        budgets = await _budgets(objects, pod)
        if len(budgets) > 1:
            raise Internal("This pod has more than one PodDisruptionBudget, which the "
                           "eviction subresource does not support.")
        if budgets:
            await _spend(objects, budgets[0], pod, dry_run=dry_run)
    await _delete(objects, pod, opts, dry_run=dry_run)
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "code": 201}


async def _spend(objects: ObjectService, pdb: Obj, pod: Obj, *, dry_run: bool) -> None:
    """checkAndDecrement, retried on conflicts with the disruption controller's writes."""
    for _ in range(_RETRIES):
        if not _ready(pod) and _unhealthy_may_go(pdb):
            return
        status = dict(pdb.get("status") or {})
        pdb_name = pdb["metadata"]["name"]
        if int(status.get("observedGeneration") or 0) < int(pdb["metadata"].get("generation")
                                                              or 1):
            raise TooManyRequests(MESSAGE, retry_after=10, causes=[Cause(
                "", f"The disruption budget {pdb_name} is still being processed by the "
                "server.", reason=CAUSE)])
        allowed = int(status.get("disruptionsAllowed") or 0)
        if allowed < 0:
            raise Forbidden("pdb disruptions allowed is negative")
        if len(status.get("disruptedPods") or {}) > _MAX_DISRUPTED:
            raise Forbidden("DisruptedPods map too big - too many evictions not confirmed by "
                            "PDB controller")
        if allowed == 0:
            raise TooManyRequests(MESSAGE, retry_after=0, causes=[Cause(
                "", f"The disruption budget {pdb_name} needs {status.get('desiredHealthy', 0)} "
                f"healthy pods and has {status.get('currentHealthy', 0)} currently",
                reason=CAUSE)])
        if dry_run:
            return
        status["disruptionsAllowed"] = allowed - 1
        status["disruptedPods"] = {**(status.get("disruptedPods") or {}),
                                   pod["metadata"]["name"]: rfc3339(objects.now())}
        if allowed - 1 == 0:
            status["conditions"] = [
                c for c in status.get("conditions") or [] if c.get("type") != "DisruptionAllowed"
            ] + [{"type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods",
                  "message": "", "observedGeneration": status.get("observedGeneration"),
                  "lastTransitionTime": rfc3339(objects.now())}]
        body = {**pdb, "status": status}
        try:
            await objects.update("poddisruptionbudgets", body, subresource="status")
            return
        except Conflict:
            pdb = await objects.get("poddisruptionbudgets", pdb_name,
                                    namespace=pdb["metadata"]["namespace"])
    raise TooManyRequests(MESSAGE, retry_after=1, causes=[Cause(
        "", "too many conflicts updating the disruption budget; retry", reason=CAUSE)])


def _unhealthy_may_go(pdb: Obj) -> bool:
    """A not-ready pod: evicted without spending the budget, per unhealthyPodEvictionPolicy."""
    spec, status = pdb.get("spec") or {}, pdb.get("status") or {}
    if spec.get("unhealthyPodEvictionPolicy") == "AlwaysAllow":
        return True
    desired = int(status.get("desiredHealthy") or 0)
    return (int(status.get("observedGeneration") or 0) == int(pdb["metadata"].get("generation")
                                                              or 1)
            and int(status.get("currentHealthy") or 0) >= desired > 0)


async def _delete(objects: ObjectService, pod: Obj, opts: Obj, *, dry_run: bool) -> None:
    md = pod["metadata"]
    pre = opts.get("preconditions") or {}
    if not dry_run and not md.get("deletionTimestamp") and \
            (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
        status = dict(pod.get("status") or {})
        status["conditions"] = [c for c in status.get("conditions") or []
                                if c.get("type") != "DisruptionTarget"] + [{
            "type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
            "message": "Eviction API: evicting", "lastTransitionTime": rfc3339(objects.now())}]
        try:
            await objects.update("pods", {**pod, "status": status}, subresource="status")
        except (Conflict, NotFound):
            pass   # the pod moved on; the deletion below decides
    await objects.delete("pods", md["name"], namespace=md["namespace"],
                         grace_period=opts.get("gracePeriodSeconds"),
                         preconditions_uid=pre.get("uid") or None,
                         preconditions_rv=pre.get("resourceVersion") or None, dry_run=dry_run)
