"""Pure StatefulSet identity: what pod `web-3` and its claims `www-web-3` look like, which
ordinal a pod has, which revision it runs, whether it is healthy; and the status counts.

No I/O here (upstream's stateful_set_utils.go): the controller (statefulset.py) decides and
writes; these functions only build and read plain dicts.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from control.clientbase import Obj
from control.controllers.revisions import POD_REVISION_LABEL
from control.controllers.util import deep, is_pod_available, is_pod_ready, is_terminating, meta
from control.controllers.util import owner_ref as _owner_ref

__all__ = [
    "POD_INDEX_LABEL",
    "POD_NAME_LABEL",
    "claim_name",
    "claims_for",
    "compute_status",
    "is_failed",
    "is_healthy",
    "new_pod",
    "ordinal_of",
    "pod_revision",
    "ref_to",
]

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


def ordinal_of(set_name: str, pod: Obj) -> int | None:
    """The ordinal in `web-3`, or None if the pod is not named like one of `set_name`'s."""
    m = re.fullmatch(re.escape(set_name) + r"-(0|[1-9][0-9]*)", meta(pod).get("name") or "")
    return int(m.group(1)) if m else None


def claim_name(template: Obj, set_name: str, ordinal: int) -> str:
    return f"{meta(template).get('name')}-{set_name}-{ordinal}"


def ref_to(owner: Obj, *, controller: bool = False) -> dict[str, Any]:
    ref = _owner_ref(owner)
    ref["controller"] = controller
    return ref


def claims_for(sts: Obj, ordinal: int) -> list[Obj]:
    """The PVCs pod `ordinal` needs, from volumeClaimTemplates: named `<tmpl>-<set>-<i>`,
    labelled with the set's matchLabels; owned by the set when whenDeleted is Delete."""
    m, spec = meta(sts), sts.get("spec") or {}
    match = (spec.get("selector") or {}).get("matchLabels") or {}
    retention = spec.get("persistentVolumeClaimRetentionPolicy") or {}
    out = []
    for tmpl in spec.get("volumeClaimTemplates") or []:
        tm = meta(tmpl)
        labels = {**(tm.get("labels") or {}), **match}
        md: dict[str, Any] = {"name": claim_name(tmpl, m["name"], ordinal),
                              "namespace": m.get("namespace"), "labels": labels}
        if tm.get("annotations"):
            md["annotations"] = dict(tm["annotations"])
        if retention.get("whenDeleted") == "Delete":
            md["ownerReferences"] = [ref_to(sts)]
        out.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": md,
                    "spec": deep(tmpl.get("spec") or {})})
    return out


def new_pod(sts: Obj, ordinal: int, revision: Obj) -> Obj:
    """Pod `ordinal` of `sts` built from `revision`'s template (the set with the template of
    the revision it should run): stable name, hostname and subdomain, claims as volumes."""
    m, spec = meta(sts), sts.get("spec") or {}
    template = deep(spec.get("template") or {})
    tm = template.get("metadata") or {}
    name = f"{m['name']}-{ordinal}"
    labels = dict(tm.get("labels") or {})
    labels[POD_NAME_LABEL] = name
    labels[POD_INDEX_LABEL] = str(ordinal)
    labels[POD_REVISION_LABEL] = meta(revision)["name"]
    pod_meta: dict[str, Any] = {"name": name, "namespace": m.get("namespace"),
                                "labels": labels, "ownerReferences": [ref_to(sts,
                                                                             controller=True)]}
    for field in ("annotations", "finalizers"):
        if tm.get(field):
            pod_meta[field] = tm[field]
    pod_spec = template.get("spec") or {}
    pod_spec["hostname"] = name
    if spec.get("serviceName"):
        pod_spec["subdomain"] = spec["serviceName"]
    claims = {meta(t).get("name"): claim_name(t, m["name"], ordinal)
              for t in spec.get("volumeClaimTemplates") or []}
    volumes = [v for v in pod_spec.get("volumes") or [] if v.get("name") not in claims]
    volumes += [{"name": vol, "persistentVolumeClaim": {"claimName": claim}}
                for vol, claim in claims.items()]
    if volumes:
        pod_spec["volumes"] = volumes
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": pod_spec}


def pod_revision(pod: Obj) -> str:
    return str((meta(pod).get("labels") or {}).get(POD_REVISION_LABEL) or "")


def is_failed(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded")


def is_running_ready(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and is_pod_ready(pod)


def is_healthy(pod: Obj, min_ready: int, now: datetime) -> bool:
    """Running, Ready for minReadySeconds, and not being deleted."""
    return (is_running_ready(pod) and not is_terminating(pod)
            and is_pod_available(pod, min_ready, now))


def compute_status(sts: Obj, pods: list[Obj], *, current: str, update: str,
                   collisions: int, now: datetime) -> Obj:
    """status as upstream computes it; the rollout is complete (current = update) once
    every replica runs the update revision and is ready."""
    spec = sts.get("spec") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    created = [p for p in pods if (p.get("status") or {}).get("phase")]
    live = [p for p in created if not is_terminating(p)]
    status: Obj = {
        "observedGeneration": meta(sts).get("generation", 1),
        "replicas": len(created),
        "readyReplicas": sum(1 for p in live if is_running_ready(p)),
        "availableReplicas": sum(1 for p in live if is_healthy(p, min_ready, now)),
        "currentReplicas": sum(1 for p in live if pod_revision(p) == current),
        "updatedReplicas": sum(1 for p in live if pod_revision(p) == update),
        "currentRevision": current, "updateRevision": update,
        "collisionCount": collisions,
    }
    want = int(spec.get("replicas", 1))
    rolling = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"
    if (rolling and status["updatedReplicas"] == want and status["readyReplicas"] == want
            and status["replicas"] == want):
        status["currentRevision"] = update
        status["currentReplicas"] = status["updatedReplicas"]
    return status
