"""Cells of `kubectl get` rows, one function per kind, ported from Kubernetes'
pkg/printers/internalversion/printers.go so knet's columns read exactly like a cluster's:
pod STATUS (CrashLoopBackOff, Init:0/1, Completed, Terminating, ...), RESTARTS with
"(5m ago)", service PORT(S) `80:30080/TCP`, node ROLES, endpoints `ip:port + N more...`.

Each function takes the wire dict and `now`, and returns all cells including the wide
(priority 1) ones, as Kubernetes' server-side printing does; kubectl hides the wide ones.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from control.errors import BadRequest
from control.models.selectors import selector_from_spec

__all__ = [
    "age",
    "containers_images",
    "deployment_cells",
    "dig",
    "endpoints_cells",
    "endpointslice_cells",
    "event_cells",
    "format_labels",
    "human_duration",
    "node_cells",
    "parse_time",
    "pod_cells",
    "pod_row_conditions",
    "replicaset_cells",
    "selector_string",
    "service_cells",
]

Obj = dict[str, Any]
Cells = list[Any]
NONE = "<none>"


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration: 5s, 3m12s, 17m, 5h3m, 2d, 3y12d."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        years, days = hours // 24 // 365, (hours // 24) % 365
        return f"{years}y{days}d" if days else f"{years}y"
    return f"{hours // 24 // 365}y"


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def age(value: Any, now: datetime) -> str:
    """kubectl's translateTimestampSince: "<unknown>" for a missing time."""
    t = parse_time(value)
    return "<unknown>" if t is None else human_duration((now - t).total_seconds())


def format_labels(labels: Any) -> str:
    if not labels or not isinstance(labels, dict):
        return NONE
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def selector_string(selector: Any) -> str:
    """A spec selector (object or map form) as kubectl shows it; "<none>" when empty."""
    try:
        text = str(selector_from_spec(selector)) if isinstance(selector, dict) else ""
    except BadRequest:         # a stored selector that does not parse: show it raw
        return str(selector)
    return text or NONE


def dig(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


# ---- pods ----------------------------------------------------------------------------------

def _terminated_reason(term: Obj, prefix: str = "") -> str:
    if term.get("reason"):
        return prefix + str(term["reason"])
    if term.get("signal"):
        return f"{prefix}Signal:{term['signal']}"
    return f"{prefix}ExitCode:{term.get('exitCode', 0)}"


def _init_status(pod: Obj, spec: Obj, status: Obj, acc: dict[str, Any]) -> bool:
    """Walk init containers as printPod does; returns True while initializing."""
    inits = {c.get("name"): c for c in spec.get("initContainers") or []}
    total = len(spec.get("initContainers") or [])
    for i, cs in enumerate(status.get("initContainerStatuses") or []):
        acc["restarts"] += int(cs.get("restartCount") or 0)
        _last_restart(cs, acc)
        sidecar = (inits.get(cs.get("name")) or {}).get("restartPolicy") == "Always"
        if sidecar:
            acc["sidecar_restarts"] += int(cs.get("restartCount") or 0)
        state = cs.get("state") or {}
        term, waiting = state.get("terminated"), state.get("waiting")
        if term and term.get("exitCode", 0) == 0:
            continue
        if sidecar and cs.get("started"):
            acc["ready"] += bool(cs.get("ready"))
            continue
        if term:
            acc["reason"] = _terminated_reason(term, "Init:")
        elif waiting and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            acc["reason"] = "Init:" + waiting["reason"]
        else:
            acc["reason"] = f"Init:{i}/{total}"
        return True
    return False


def _last_restart(cs: Obj, acc: dict[str, Any]) -> None:
    finished = parse_time(dig(cs, "lastState", "terminated", "finishedAt"))
    if finished and (acc["last"] is None or finished > acc["last"]):
        acc["last"] = finished


def _container_status(pod: Obj, status: Obj, acc: dict[str, Any]) -> None:
    acc["restarts"], acc["last"] = acc["sidecar_restarts"], None
    has_running = False
    for cs in reversed(status.get("containerStatuses") or []):
        acc["restarts"] += int(cs.get("restartCount") or 0)
        _last_restart(cs, acc)
        state = cs.get("state") or {}
        waiting, term = state.get("waiting") or {}, state.get("terminated")
        if waiting.get("reason"):
            acc["reason"] = waiting["reason"]
        elif term:
            acc["reason"] = _terminated_reason(term)
        elif cs.get("ready") and state.get("running") is not None:
            has_running = True
            acc["ready"] += 1
    if acc["reason"] == "Completed" and has_running:
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in status.get("conditions") or [])
        acc["reason"] = "Running" if ready else "NotReady"


def pod_status(pod: Obj) -> tuple[str, int, int, int, datetime | None]:
    """(STATUS, ready containers, total containers, restarts, last restart time)."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    phase = status.get("phase") or ""
    acc: dict[str, Any] = {"reason": status.get("reason") or phase, "ready": 0,
                           "restarts": 0, "sidecar_restarts": 0, "last": None}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            acc["reason"] = "SchedulingGated"
    total = len(spec.get("containers") or []) + sum(
        1 for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always")
    initializing = _init_status(pod, spec, status, acc)
    initialized = any(c.get("type") == "Initialized" and c.get("status") == "True"
                      for c in status.get("conditions") or [])
    if not initializing or initialized:
        _container_status(pod, status, acc)
    deleting = dig(pod, "metadata", "deletionTimestamp")
    if deleting and status.get("reason") == "NodeLost":
        acc["reason"] = "Unknown"
    elif deleting and phase not in ("Succeeded", "Failed"):
        acc["reason"] = "Terminating"
    return acc["reason"], acc["ready"], total, acc["restarts"], acc["last"]


def pod_cells(pod: Obj, now: datetime) -> Cells:
    reason, ready, total, restarts, last = pod_status(pod)
    restarts_str = str(restarts)
    if restarts and last is not None:
        restarts_str = f"{restarts} ({human_duration((now - last).total_seconds())} ago)"
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    ips = status.get("podIPs") or []
    ip = (ips[0].get("ip") if ips and isinstance(ips[0], dict) else None) or status.get("podIP")
    gates = spec.get("readinessGates") or []
    gates_str = NONE
    if gates:
        conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        gates_str = f"{sum(conds.get(g.get('conditionType')) == 'True' for g in gates)}/" \
                    f"{len(gates)}"
    return [dig(pod, "metadata", "name"), f"{ready}/{total}", reason, restarts_str,
            age(dig(pod, "metadata", "creationTimestamp"), now), ip or NONE,
            spec.get("nodeName") or NONE, status.get("nominatedNodeName") or NONE, gates_str]


def pod_row_conditions(pod: Obj) -> list[Obj] | None:
    phase = dig(pod, "status", "phase")
    if phase == "Succeeded":
        return [{"type": "Completed", "status": "True", "reason": "Succeeded",
                 "message": "The pod has completed successfully."}]
    if phase == "Failed":
        return [{"type": "Completed", "status": "True", "reason": "Failed",
                 "message": "The pod failed."}]
    return None


# ---- services and endpoints ---------------------------------------------------------------

def _external_ip(spec: Obj, status: Obj) -> str:
    kind = spec.get("type") or "ClusterIP"
    external = [str(ip) for ip in spec.get("externalIPs") or []]
    if kind == "ExternalName":
        return str(spec.get("externalName") or NONE)
    if kind == "LoadBalancer":
        ingress = [i.get("ip") or i.get("hostname") for i in
                   dig(status, "loadBalancer", "ingress") or [] if isinstance(i, dict)]
        found = [str(x) for x in ingress if x] + external
        return ",".join(found) if found else "<pending>"
    return ",".join(external) if external else NONE


def service_cells(svc: Obj, now: datetime) -> Cells:
    spec, status = svc.get("spec") or {}, svc.get("status") or {}
    ports = []
    for p in spec.get("ports") or []:
        proto = p.get("protocol") or "TCP"
        node = f":{p['nodePort']}" if p.get("nodePort") else ""
        ports.append(f"{p.get('port')}{node}/{proto}")
    return [dig(svc, "metadata", "name"), spec.get("type") or "ClusterIP",
            spec.get("clusterIP") or NONE, _external_ip(spec, status),
            ",".join(ports) or NONE, age(dig(svc, "metadata", "creationTimestamp"), now),
            format_labels(spec.get("selector"))]


def _more(items: list[str], limit: int = 3) -> str:
    shown = ",".join(items[:limit])
    return f"{shown} + {len(items) - limit} more..." if len(items) > limit else shown


def endpoints_cells(ep: Obj, now: datetime) -> Cells:
    items: list[str] = []
    for subset in ep.get("subsets") or []:
        ports = subset.get("ports") or []
        for addr in subset.get("addresses") or []:
            if ports:
                items.extend(f"{addr.get('ip')}:{p.get('port')}" for p in ports)
            else:
                items.append(str(addr.get("ip")))
    return [dig(ep, "metadata", "name"), _more(items) or NONE,
            age(dig(ep, "metadata", "creationTimestamp"), now)]


def endpointslice_cells(es: Obj, now: datetime) -> Cells:
    ports = [str(p["port"]) if p.get("port") is not None else "<unset>"
             for p in es.get("ports") or []]
    addrs = [str(a) for e in es.get("endpoints") or [] for a in e.get("addresses") or []]
    return [dig(es, "metadata", "name"), es.get("addressType") or "",
            _more(ports) or "<unset>", _more(addrs) or NONE,
            age(dig(es, "metadata", "creationTimestamp"), now)]


# ---- workloads and nodes --------------------------------------------------------------------

def containers_images(obj: Obj) -> tuple[str, str]:
    containers = dig(obj, "spec", "template", "spec", "containers") or []
    return (",".join(str(c.get("name")) for c in containers),
            ",".join(str(c.get("image")) for c in containers))


def deployment_cells(d: Obj, now: datetime) -> Cells:
    spec, status = d.get("spec") or {}, d.get("status") or {}
    names, images = containers_images(d)
    desired = spec.get("replicas", 1)
    return [dig(d, "metadata", "name"), f"{status.get('readyReplicas') or 0}/{desired}",
            status.get("updatedReplicas") or 0, status.get("availableReplicas") or 0,
            age(dig(d, "metadata", "creationTimestamp"), now), names, images,
            selector_string(spec.get("selector"))]


def replicaset_cells(rs: Obj, now: datetime) -> Cells:
    spec, status = rs.get("spec") or {}, rs.get("status") or {}
    names, images = containers_images(rs)
    return [dig(rs, "metadata", "name"), spec.get("replicas", 1), status.get("replicas") or 0,
            status.get("readyReplicas") or 0, age(dig(rs, "metadata", "creationTimestamp"), now),
            names, images, selector_string(spec.get("selector"))]


def node_cells(node: Obj, now: datetime) -> Cells:
    spec, status, md = node.get("spec") or {}, node.get("status") or {}, node.get("metadata")
    ready = {c.get("type"): c.get("status") for c in status.get("conditions") or []}.get("Ready")
    # as kubectl prints it: Ready=False and Ready=Unknown are both NotReady
    state = "Unknown" if ready is None else ("Ready" if ready == "True" else "NotReady")
    if spec.get("unschedulable"):
        state += ",SchedulingDisabled"
    roles = set()
    for key, value in ((md or {}).get("labels") or {}).items():
        if key.startswith("node-role.kubernetes.io/") and key[24:]:
            roles.add(key[24:])
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    info = status.get("nodeInfo") or {}
    return [dig(node, "metadata", "name"), state, ",".join(sorted(roles)) or NONE,
            age(dig(node, "metadata", "creationTimestamp"), now),
            info.get("kubeletVersion") or "", addresses.get("InternalIP") or NONE,
            addresses.get("ExternalIP") or NONE, info.get("osImage") or "<unknown>",
            info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"]


def event_cells(ev: Obj, now: datetime) -> Cells:
    first = age(ev.get("firstTimestamp"), now) if ev.get("firstTimestamp") \
        else age(ev.get("eventTime"), now)
    last = age(ev.get("lastTimestamp"), now) if ev.get("lastTimestamp") else first
    count = ev.get("count") or 1
    series = ev.get("series")
    if isinstance(series, dict):
        last = age(series.get("lastObservedTime"), now)
        count = series.get("count") or count
    involved = ev.get("involvedObject") or {}
    kind = str(involved.get("kind") or "").lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    source = ev.get("source") or {}
    src = source.get("component") or ev.get("reportingComponent") or ""
    host = source.get("host") or ev.get("reportingInstance") or ""
    src = f"{src}, {host}" if src and host else src or host
    return [last, ev.get("type") or "", ev.get("reason") or "", target,
            involved.get("fieldPath") or "", src, str(ev.get("message") or "").strip(),
            first, count, dig(ev, "metadata", "name")]
