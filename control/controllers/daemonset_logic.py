"""The DaemonSet controller's decisions as pure functions (pkg/controller/daemon, v1.32):
which nodes should run a daemon pod (`should_run`), the pod for one node (`pod_for_node`:
the template, the tolerations the controller adds, node affinity replaced by a
`matchFields metadata.name In [node]` term so the scheduler binds it there), what to create
or delete per node (`plan_node`), which old pods a RollingUpdate replaces now
(`rolling_update`, maxUnavailable and maxSurge paths as upstream), and the status counters.

Everything takes wire dicts and returns names; the controller (daemonset.py) does the I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from control.clock import parse_rfc3339
from control.controllers.nodeaffinity import required_affinity_matches, untolerated_taint
from control.controllers.revisions import POD_REVISION_LABEL
from control.controllers.util import deep, is_pod_available, is_pod_ready, meta, owner_ref

__all__ = ["DAEMON_TOLERATIONS", "GENERATION_LABEL", "NodePlan", "add_daemon_tolerations",
           "daemon_status", "node_of_pod", "plan_node", "pod_for_node", "rolling_update",
           "scaled", "should_run", "surge_and_unavailable"]

Obj = dict[str, Any]
GENERATION_LABEL = "pod-template-generation"

# util.AddOrUpdateDaemonPodTolerations: what every daemon pod tolerates.
DAEMON_TOLERATIONS: tuple[Obj, ...] = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
)
_HOST_NETWORK_TOLERATION = {"key": "node.kubernetes.io/network-unavailable",
                            "operator": "Exists", "effect": "NoSchedule"}


def add_daemon_tolerations(pod_spec: Obj) -> None:
    """Add (or replace, by key and effect) the daemon tolerations on a pod spec, in place."""
    wanted = list(DAEMON_TOLERATIONS)
    if pod_spec.get("hostNetwork"):
        wanted.append(_HOST_NETWORK_TOLERATION)
    tols = [t for t in pod_spec.get("tolerations") or [] if isinstance(t, dict)]
    for want in wanted:
        tols = [t for t in tols if not (t.get("key") == want["key"]
                                        and t.get("effect") == want["effect"])]
        tols.append(dict(want))
    pod_spec["tolerations"] = tols


def _template_spec(ds: Obj) -> Obj:
    return deep((((ds.get("spec") or {}).get("template") or {}).get("spec")) or {})


def should_run(ds: Obj, node: Obj) -> tuple[bool, bool]:
    """(should run, should continue running) of ds's pod on node (NodeShouldRunDaemonPod)."""
    spec = _template_spec(ds)
    name = meta(node).get("name")
    if spec.get("nodeName") and spec.get("nodeName") != name:
        return False, False
    add_daemon_tolerations(spec)
    if not required_affinity_matches(spec, node):
        return False, False
    taints = [t for t in (node.get("spec") or {}).get("taints") or [] if isinstance(t, dict)]
    tols = spec.get("tolerations") or []
    if untolerated_taint(taints, tols) is not None:
        return False, untolerated_taint(taints, tols, ("NoExecute",)) is None
    return True, True


def pod_for_node(ds: Obj, node_name: str, revision_hash: str) -> Obj:
    """A new daemon pod for node_name: generateName `<ds>-`, template labels plus
    controller-revision-hash and pod-template-generation, pinned by node affinity."""
    om = meta(ds)
    template = deep((ds.get("spec") or {}).get("template") or {})
    tm = template.get("metadata") or {}
    spec = template.get("spec") or {}
    add_daemon_tolerations(spec)
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}
    affinity = spec.setdefault("affinity", {})
    node_aff = affinity.setdefault("nodeAffinity", {})
    node_aff["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [term]}
    labels = dict(tm.get("labels") or {})
    labels[POD_REVISION_LABEL] = revision_hash
    labels[GENERATION_LABEL] = str(om.get("generation") or 1)
    pod_meta: Obj = {"generateName": f"{om['name']}-", "namespace": om.get("namespace"),
                     "labels": labels, "ownerReferences": [owner_ref(ds)]}
    for key in ("annotations", "finalizers"):
        if tm.get(key):
            pod_meta[key] = tm[key]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": spec}


def node_of_pod(pod: Obj) -> str | None:
    """The node a daemon pod is on, or is pinned to by its matchFields term."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution")) or {}
    for term in required.get("nodeSelectorTerms") or []:
        for req in term.get("matchFields") or []:
            values = req.get("values") or []
            if req.get("key") == "metadata.name" and req.get("operator") == "In" and \
                    len(values) == 1:
                return str(values[0])
    return None


def _age_key(pod: Obj) -> tuple[float, int, str]:
    """podByCreationTimestampAndPhase: oldest first; at equal age, Running before others."""
    created = parse_rfc3339(meta(pod).get("creationTimestamp"))
    phase = (pod.get("status") or {}).get("phase")
    return (created.timestamp() if created else 0.0, 0 if phase == "Running" else 1,
            meta(pod).get("name", ""))


def oldest_first(pods: list[Obj]) -> list[Obj]:
    return sorted(pods, key=_age_key)


def is_updated(pod: Obj, revision_hash: str) -> bool:
    return (meta(pod).get("labels") or {}).get(POD_REVISION_LABEL) == revision_hash


@dataclass
class NodePlan:
    create: bool = False
    delete: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)   # deleted because they failed


def plan_node(pods: list[Obj], *, run: bool, keep: bool, surge: bool,
              revision_hash: str) -> NodePlan:
    """podsShouldBeOnNode: create a pod, or delete failed, duplicate or misplaced ones."""
    plan = NodePlan()
    if run and not pods:
        plan.create = True
        return plan
    if not keep:
        plan.delete = [meta(p)["name"] for p in pods if not meta(p).get("deletionTimestamp")]
        return plan
    running: list[Obj] = []
    for pod in pods:
        if meta(pod).get("deletionTimestamp"):
            continue
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Failed", "Succeeded"):
            plan.failed.append(meta(pod)["name"])
            continue
        running.append(pod)
    plan.delete.extend(plan.failed)
    if len(running) <= 1:
        return plan
    ordered = oldest_first(running)
    if not surge:
        plan.delete.extend(meta(p)["name"] for p in ordered[1:])
        return plan
    oldest_new: Obj | None = None
    oldest_old: Obj | None = None
    for pod in ordered:
        if is_updated(pod, revision_hash):
            if oldest_new is None:
                oldest_new = pod
                continue
        elif oldest_old is None:
            oldest_old = pod
            continue
        plan.delete.append(meta(pod)["name"])
    if oldest_new is not None and oldest_old is not None and (
            not is_pod_ready(oldest_old) or is_pod_ready(oldest_new)):
        plan.delete.append(meta(oldest_old)["name"])
    return plan


def scaled(value: Any, total: int, *, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value)
    if text.endswith("%"):
        pct = int(text[:-1]) * total / 100
        return math.ceil(pct) if round_up else math.floor(pct)
    return int(text)


def surge_and_unavailable(ds: Obj, desired: int) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) in pods for `desired` scheduled nodes; at least 1 unavailable
    when both are 0, as updatedDesiredNodeCounts."""
    ru = (((ds.get("spec") or {}).get("updateStrategy") or {}).get("rollingUpdate")) or {}
    surge = scaled(ru.get("maxSurge", 0), desired, round_up=True)
    unavailable = scaled(ru.get("maxUnavailable", 1), desired, round_up=True)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def _split(pods: list[Obj], revision_hash: str) -> tuple[Obj | None, Obj | None, bool]:
    """findUpdatedPodsOnNode: (new pod, old pod, ok); not ok with two of either."""
    new = old = None
    for pod in pods:
        if meta(pod).get("deletionTimestamp"):
            continue
        if is_updated(pod, revision_hash):
            if new is not None:
                return None, None, False
            new = pod
        else:
            if old is not None:
                return None, None, False
            old = pod
    return new, old, True


def rolling_update(ds: Obj, node_pods: dict[str, list[Obj]], runnable: set[str], *,
                   revision_hash: str, now: datetime) -> tuple[list[str], list[str]]:
    """(old pod names to delete, node names to create a surge pod on) this round."""
    min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
    surge, unavailable = surge_and_unavailable(ds, len(runnable))

    def available(pod: Obj) -> bool:
        return is_pod_available(pod, min_ready, now)

    if surge == 0:
        n_unavailable = 0
        allowed: list[str] = []
        candidates: list[str] = []
        for node in sorted(node_pods):
            new, old, ok = _split(node_pods[node], revision_hash)
            if not ok or (new is None) == (old is None):
                n_unavailable += 1
            elif new is not None:
                n_unavailable += 0 if available(new) else 1
            elif old is not None and not available(old):
                allowed.append(meta(old)["name"])
            elif n_unavailable < unavailable and old is not None:
                candidates.append(meta(old)["name"])
        room = min(max(unavailable - n_unavailable, 0), len(candidates))
        return allowed + candidates[:room], []
    n_surge = 0
    to_create: list[str] = []
    to_delete: list[str] = []
    for node in sorted(set(node_pods) & runnable):
        new, old, ok = _split(node_pods[node], revision_hash)
        if not ok or old is None:
            continue
        if new is None:
            if not available(old):
                to_create.append(node)
            elif n_surge < surge:
                n_surge += 1
                to_create.append(node)
        elif not available(new):
            n_surge += 1
        else:
            to_delete.append(meta(old)["name"])
    return to_delete, to_create


def daemon_status(ds: Obj, node_pods: dict[str, list[Obj]], verdicts: dict[str, bool], *,
                  revision_hash: str, now: datetime) -> Obj:
    """The counters of DaemonSetStatus (updateDaemonSetStatus); verdicts: node -> should run."""
    min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
    out = {"desiredNumberScheduled": 0, "currentNumberScheduled": 0, "numberMisscheduled": 0,
           "numberReady": 0, "numberAvailable": 0, "updatedNumberScheduled": 0}
    for node, run in verdicts.items():
        pods = node_pods.get(node) or []
        if not run:
            out["numberMisscheduled"] += 1 if pods else 0
            continue
        out["desiredNumberScheduled"] += 1
        if not pods:
            continue
        out["currentNumberScheduled"] += 1
        pod = oldest_first(pods)[0]
        if is_pod_ready(pod):
            out["numberReady"] += 1
            if is_pod_available(pod, min_ready, now):
                out["numberAvailable"] += 1
        if is_updated(pod, revision_hash):
            out["updatedNumberScheduled"] += 1
    out["numberUnavailable"] = out["desiredNumberScheduled"] - out["numberAvailable"]
    return out
