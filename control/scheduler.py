"""The scheduler: binds pending pods (no spec.nodeName, schedulerName default-scheduler) to
nodes through the pods/binding subresource.

Filter, then score, as kube-scheduler does, on the informer caches plus the pods it has just
bound but not yet seen back (`assumed`), so a burst of pods is spread and never overcommits:
- filters: node Ready and schedulable, nodeSelector and required node affinity (matchFields
  metadata.name included, as DaemonSet pods use), taints with
  effect NoSchedule/NoExecute tolerated, cpu/memory requests and pod count within allocatable
  minus what the node's pods request;
- score: fewest pods of the same owner on the node, then fewest pods, then name;
- volumes (schedvolumes.py): claims must exist, PV node affinity is honoured, and unbound
  WaitForFirstConsumer claims are told the chosen node before the pod is bound.
A pod that fits nowhere stays Pending with condition PodScheduled=False/Unschedulable and a
FailedScheduling event giving kube-scheduler's summary; it is retried when nodes change or
pods go away.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Any

from control.clientbase import Client, Obj
from control.clock import Clock, rfc3339
from control.controllers.base import Controller
from control.controllers.events import EventRecorder
from control.controllers.nodeaffinity import required_affinity_matches
from control.controllers.nodelifecycle import tolerates
from control.controllers.util import controller_ref, is_terminating, meta
from control.errors import BadRequest, Conflict, MethodNotAllowed, NotFound
from control.informer import Informer, object_key
from control.schedvolumes import VolumeBinding

__all__ = ["DEFAULT_SCHEDULER", "NodeUsage", "Scheduler", "parse_quantity", "pod_requests"]

DEFAULT_SCHEDULER = "default-scheduler"
_SUFFIX = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_QTY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")


def parse_quantity(value: Any) -> float:
    """A Kubernetes quantity ("500m", "1.5", "128Mi", "1G") as a float (cores or bytes)."""
    if isinstance(value, (int, float)):
        return float(value)
    m = _QTY.match(str(value).strip())
    if not m or m.group(2) not in _SUFFIX and m.group(2):
        raise ValueError(f"quantity {value!r} is not valid; e.g. 500m, 2, 128Mi, 1Gi")
    return float(m.group(1)) * _SUFFIX.get(m.group(2), 1.0)


def pod_requests(pod: Obj) -> dict[str, float]:
    """cpu/memory requested: the sum over containers, at least the largest init container."""
    spec = pod.get("spec") or {}

    def req(c: Obj, r: str) -> float:
        res = c.get("resources") or {}
        v = (res.get("requests") or {}).get(r, (res.get("limits") or {}).get(r))
        return parse_quantity(v) if v is not None else 0.0
    out = {}
    for r in ("cpu", "memory"):
        total = sum(req(c, r) for c in spec.get("containers") or [])
        init = max((req(c, r) for c in spec.get("initContainers") or []), default=0.0)
        out[r] = max(total, init)
    return out


Port = tuple[str, str, int]


def host_ports(pod: Obj) -> frozenset[Port]:
    """The (protocol, hostIP, hostPort) a pod takes on its node (kube-scheduler's NodePorts)."""
    spec = pod.get("spec") or {}
    return frozenset(
        (str(p.get("protocol") or "TCP"), str(p.get("hostIP") or "0.0.0.0"), int(p["hostPort"]))
        for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])
        for p in c.get("ports") or [] if isinstance(p, dict) and p.get("hostPort"))


def _node_fields(n: Obj) -> tuple[Any, ...]:
    """What decides where pods fit: a change here retries unschedulable pods."""
    status = n.get("status") or {}
    return (meta(n).get("labels"), n.get("spec"), status.get("allocatable"),
            [(c.get("type"), c.get("status")) for c in status.get("conditions") or []])


def _taint_text(t: Obj) -> str:
    return "{" + f"{t.get('key', '')}: {t.get('value', '')}" + "}"


class NodeUsage:
    """Per node: how many pods, how many of each owner, and cpu/memory requested; kept up to
    date from pod events (and pods just bound), so filtering and scoring are O(nodes)."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[str, str, float, float, frozenset[Port]]] = {}
        self._ports: defaultdict[str, Counter[Port]] = defaultdict(Counter)
        self._pods: Counter[str] = Counter()
        self._owners: dict[str, Counter[str]] = defaultdict(Counter)
        self._cpu: defaultdict[str, float] = defaultdict(float)
        self._memory: defaultdict[str, float] = defaultdict(float)

    def set(self, key: str, pod: Obj, node: str | None = None) -> None:
        """Record pod (on `node`, default its spec.nodeName); finished pods take nothing."""
        self.remove(key)
        node = node or (pod.get("spec") or {}).get("nodeName")
        if not node or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return
        owner = str((controller_ref(pod) or {}).get("uid") or "")
        req = pod_requests(pod)
        ports = host_ports(pod)
        self._entries[key] = (node, owner, req["cpu"], req["memory"], ports)
        self._ports[node].update(ports)
        self._pods[node] += 1
        self._owners[node][owner] += 1
        self._cpu[node] += req["cpu"]
        self._memory[node] += req["memory"]

    def remove(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        node, owner, cpu, memory, ports = entry
        self._ports[node].subtract(ports)
        self._pods[node] -= 1
        self._owners[node][owner] -= 1
        self._cpu[node] -= cpu
        self._memory[node] -= memory

    def pods(self, node: str) -> int:
        return self._pods[node]

    def same_owner(self, node: str, owner_uid: str) -> int:
        return self._owners[node][owner_uid] if owner_uid else 0

    def requested(self, node: str, resource: str) -> float:
        return self._cpu[node] if resource == "cpu" else self._memory[node]

    def ports_free(self, node: str, wanted: frozenset[Port]) -> bool:
        """NodePorts: no wanted (protocol, hostIP, hostPort) clashes with one in use; a
        0.0.0.0 hostIP clashes with every address of the same protocol and port."""
        used = [p for p, n in self._ports[node].items() if n > 0]
        return not any(w[0] == u[0] and w[2] == u[2] and (
            w[1] == u[1] or "0.0.0.0" in (w[1], u[1])) for w in wanted for u in used)


class Scheduler(Controller):
    name = "scheduler"

    def __init__(self, client: Client, *, clock: Clock, recorder: EventRecorder,
                 pods: Informer, nodes: Informer, scheduler_name: str = DEFAULT_SCHEDULER,
                 workers: int = 1, storage: tuple[Informer, Informer, Informer] | None = None
                 ) -> None:
        super().__init__(client, clock=clock, workers=workers)
        self.recorder = recorder
        self.pods, self.nodes = pods, nodes
        self.scheduler_name = scheduler_name
        self.assumed: dict[str, tuple[str, Obj]] = {}   # pod key -> (node, pod)
        self.unschedulable: dict[str, str] = {}          # pod key -> last message
        self.usage = NodeUsage()
        pods.add_handler(on_add=self._pod, on_update=lambda o, n: self._pod(n),
                         on_delete=self._pod_deleted)
        nodes.add_handler(on_add=lambda n: self._retry(), on_update=self._node_updated)
        self.volumes = None if storage is None else VolumeBinding(   # claims, PVs, classes
            client, claims=storage[0], volumes=storage[1], classes=storage[2], pods=pods,
            retry=self._retry)

    # ---- handlers ---------------------------------------------------------------------------

    def _pod(self, pod: Obj) -> None:
        key = object_key(pod)
        if (pod.get("spec") or {}).get("nodeName"):
            self.assumed.pop(key, None)
            self.unschedulable.pop(key, None)
            self.usage.set(key, pod)
        elif key not in self.assumed:
            self.usage.remove(key)
            if self._ours(pod):
                self.enqueue(key)

    def _pod_deleted(self, pod: Obj) -> None:
        key = object_key(pod)
        self.assumed.pop(key, None)
        self.usage.remove(key)
        self.unschedulable.pop(key, None)
        if (pod.get("spec") or {}).get("nodeName"):
            self._retry()

    def _node_updated(self, old: Obj, new: Obj) -> None:
        if _node_fields(old) != _node_fields(new):
            self._retry()

    def _retry(self) -> None:
        for key in list(self.unschedulable):
            self.unschedulable[key] = ""      # so the retry's verdict is reported again
            self.enqueue(key)

    def _ours(self, pod: Obj) -> bool:
        name = (pod.get("spec") or {}).get("schedulerName") or DEFAULT_SCHEDULER
        return name == self.scheduler_name and not is_terminating(pod)

    # ---- scheduling ---------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        pod = self.pods.get(key)
        if (pod is None or (pod.get("spec") or {}).get("nodeName") or not self._ours(pod)
                or key in self.assumed):
            return
        fits: list[Obj] = []
        reasons: Counter[str] = Counter()
        why_not = self.volumes.check(pod) if self.volumes else None
        if why_not:
            await self._unschedulable(pod, Counter(), detail=why_not)
            return
        for node in self.nodes.list():
            why = self.filter(pod, node)
            if why is None:
                fits.append(node)
            else:
                reasons[why] += 1
        if not fits:
            await self._unschedulable(pod, reasons)
            return
        best = min(fits, key=lambda n: self.score(pod, n))
        if self.volumes:
            await self.volumes.prebind(pod, meta(best)["name"])
        await self._bind(pod, meta(best)["name"])

    def filter(self, pod: Obj, node: Obj) -> str | None:
        """None if the pod fits the node, else kube-scheduler's reason text."""
        spec, nspec = pod.get("spec") or {}, node.get("spec") or {}
        if nspec.get("unschedulable") and not tolerates(pod, {
                "key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"})[0]:
            return "node(s) were unschedulable"
        for t in nspec.get("taints") or []:
            if t.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(pod, t)[0]:
                return f"node(s) had untolerated taint {_taint_text(t)}"
        ready = [c for c in (node.get("status") or {}).get("conditions") or []
                 if c.get("type") == "Ready"]
        if not ready or ready[0].get("status") != "True":
            return "node(s) were not ready"
        if not required_affinity_matches(spec, node):
            return "node(s) didn't match Pod's node affinity/selector"
        if self.volumes and (conflict := self.volumes.filter(pod, node)):
            return conflict
        return self._resources_fit(pod, node)

    def _resources_fit(self, pod: Obj, node: Obj) -> str | None:
        alloc = (node.get("status") or {}).get("allocatable") or {}
        name = meta(node)["name"]
        wanted = host_ports(pod)
        if wanted and not self.usage.ports_free(name, wanted):
            return "node(s) didn't have free ports for the requested pod ports"
        if self.usage.pods(name) + 1 > int(parse_quantity(alloc.get("pods", 110))):
            return "Too many pods"
        want = pod_requests(pod)
        for r in ("cpu", "memory"):
            if r not in alloc or not want[r]:
                continue
            if self.usage.requested(name, r) + want[r] > parse_quantity(alloc[r]) + 1e-9:
                return f"Insufficient {r}"
        return None

    def score(self, pod: Obj, node: Obj) -> tuple[int, int, str]:
        """Lower is better: fewest pods of the same owner, then fewest pods, then name."""
        name = meta(node)["name"]
        owner = str((controller_ref(pod) or {}).get("uid") or "")
        return (self.usage.same_owner(name, owner), self.usage.pods(name), name)

    async def _bind(self, pod: Obj, node: str) -> None:
        pm = meta(pod)
        key = object_key(pod)
        self.assumed[key] = (node, pod)
        self.usage.set(key, pod, node)
        binding = {"apiVersion": "v1", "kind": "Binding",
                   "metadata": {"name": pm["name"], "namespace": pm["namespace"],
                                "uid": pm.get("uid")},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        try:
            try:
                await self.client.create("pods", binding, namespace=pm["namespace"],
                                         subresource="binding")
            except (MethodNotAllowed, BadRequest):
                await self.client.patch("pods", pm["name"], {"spec": {"nodeName": node}},
                                        namespace=pm["namespace"])
        except (NotFound, Conflict) as exc:
            self.assumed.pop(key, None)
            self.usage.remove(key)
            self.log.info("%s: not bound (%s)", key, exc.message)
            return
        except Exception:
            self.assumed.pop(key, None)
            self.usage.remove(key)
            raise
        self.unschedulable.pop(key, None)
        await self.recorder.record(pod, "Normal", "Scheduled",
                                   f"Successfully assigned {key} to {node}")

    async def _unschedulable(self, pod: Obj, reasons: Counter[str], detail: str = "") -> None:
        key = object_key(pod)
        total = sum(reasons.values()) or len(self.nodes.list())
        detail = detail or ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
        message = f"0/{total} nodes are available" + (f": {detail}." if detail else ".")
        if self.unschedulable.get(key) == message:
            return
        self.unschedulable[key] = message
        await self._set_condition(pod, message)
        await self.recorder.record(pod, "Warning", "FailedScheduling", message)
        self.log.info("%s: unschedulable: %s", key, message)

    async def _set_condition(self, pod: Obj, message: str) -> None:
        pm = meta(pod)
        conds = [c for c in (pod.get("status") or {}).get("conditions") or []
                 if c.get("type") != "PodScheduled"]
        old = [c for c in (pod.get("status") or {}).get("conditions") or []
               if c.get("type") == "PodScheduled"]
        now = rfc3339(self.clock.now())
        transition = old[0].get("lastTransitionTime", now) if old and \
            old[0].get("status") == "False" else now
        conds.append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                      "message": message, "lastProbeTime": None,
                      "lastTransitionTime": transition})
        try:
            await self.client.patch("pods", pm["name"], {"status": {"conditions": conds}},
                                    namespace=pm["namespace"], subresource="status")
        except NotFound:
            pass

