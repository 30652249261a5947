"""Pure functions from the kubelet's view of a pod's containers to the Kubernetes
`PodStatus`: phase, conditions, containerStatuses. No I/O, so every rule is unit-tested.

Phase, as Kubernetes decides it: Pending until every container has started once; Running while
any runs or will be restarted; Succeeded when all terminated with 0 and none will restart;
Failed when all terminated, at least one not 0, and none will restart (restartPolicy Never, or
OnFailure for the ones that exited 0), or when an init container failed and will not be retried.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ContainerView:
    """What the kubelet knows of one container (current instance plus the previous one)."""
    name: str
    image: str
    state: Obj = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Obj = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    restart_count: int = 0
    container_id: str = ""
    will_restart: bool = True

    def to_status(self) -> Obj:
        out: Obj = {"name": self.name, "image": self.image, "imageID": f"knet://{self.image}",
                    "state": self.state, "lastState": self.last_state, "ready": self.ready,
                    "restartCount": self.restart_count, "started": self.started}
        if self.container_id:
            out["containerID"] = f"knet://{self.container_id}"
        return out

    @property
    def running(self) -> bool:
        return "running" in self.state

    @property
    def terminated(self) -> Obj | None:
        return self.state.get("terminated")


def phase(containers: list[ContainerView], *, initialized: bool,
          init: list[ContainerView] | None = None) -> str:
    if not initialized:
        # an init container that failed for good (restartPolicy Never) fails the pod
        if any(c.terminated and c.terminated.get("exitCode") != 0 and not c.will_restart
               for c in init or []):
            return "Failed"
        return "Pending"
    if any(c.running for c in containers):
        return "Running"
    terminated = [c.terminated for c in containers]
    if all(terminated) and not any(c.will_restart for c in containers):
        codes = [t.get("exitCode", 1) for t in terminated if t]
        return "Succeeded" if all(code == 0 for code in codes) else "Failed"
    if all(c.restart_count > 0 or c.terminated or c.running for c in containers):
        return "Running"  # crashed containers waiting for a restart keep the pod Running
    return "Pending"


def _condition(kind: str, ok: bool, now: str, *, reason: str = "", message: str = "",
               old: list[Obj]) -> Obj:
    status = "True" if ok else "False"
    prev = next((c for c in old if c.get("type") == kind), None)
    since = prev["lastTransitionTime"] if prev and prev.get("status") == status else now
    out: Obj = {"type": kind, "status": status, "lastProbeTime": None,
                "lastTransitionTime": since}
    if reason and not ok:
        out["reason"] = reason
    if message and not ok:
        out["message"] = message
    return out


def pod_status(*, old: Obj, containers: list[ContainerView], init: list[ContainerView],
               initialized: bool, pod_ip: str, host_ip: str, start_time: float,
               now: float, ephemeral: list[Obj] | None = None) -> Obj:
    """The whole status to write to pods/status."""
    stamp = rfc3339(now)
    old_conditions = old.get("conditions") or []
    all_ready = bool(containers) and all(c.ready for c in containers)
    not_ready = [c.name for c in containers if not c.ready]
    why = f"containers with unready status: [{' '.join(not_ready)}]" if not_ready else ""
    pending_init = [c.name for c in init if not (c.terminated and c.terminated.get("exitCode") == 0)]
    conditions = [
        _condition("PodReadyToStartContainers", bool(pod_ip), stamp, old=old_conditions),
        _condition("Initialized", initialized, stamp, reason="ContainersNotInitialized",
                   message=f"containers with incomplete status: [{' '.join(pending_init)}]",
                   old=old_conditions),
        _condition("Ready", all_ready, stamp, reason="ContainersNotReady", message=why,
                   old=old_conditions),
        _condition("ContainersReady", all_ready, stamp, reason="ContainersNotReady",
                   message=why, old=old_conditions),
        _condition("PodScheduled", True, stamp, old=old_conditions),
    ]
    out: Obj = {
        "phase": phase(containers, initialized=initialized, init=init),
        "conditions": conditions,
        "hostIP": host_ip, "hostIPs": [{"ip": host_ip}] if host_ip else [],
        "startTime": rfc3339(start_time),
        "containerStatuses": [c.to_status() for c in containers],
        "qosClass": old.get("qosClass") or "BestEffort",
    }
    if pod_ip:
        out["podIP"] = pod_ip
        out["podIPs"] = [{"ip": pod_ip}]
    if init:
        out["initContainerStatuses"] = [c.to_status() for c in init]
    if ephemeral:
        out["ephemeralContainerStatuses"] = ephemeral
    return out
