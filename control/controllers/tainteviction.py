"""Taint eviction: pods on a node with a `NoExecute` taint they do not tolerate are deleted
(gracefully: the node's kubelet is alive and stops them), at once, or after the
`tolerationSeconds` of a toleration that matches with a time limit, counted from when this
controller first saw the taint. `kubectl taint node node-1 key=value:NoExecute` empties the
node of pods that do not tolerate it, as in Kubernetes (taint-eviction-controller).

The unreachable taint is left to the node lifecycle controller (it force-deletes, since the
kubelet there is gone).
"""

from __future__ import annotations

from control.clientbase import Client, Obj
from control.clock import Clock
from control.controllers.base import Controller, Requeue
from control.controllers.events import EventRecorder
from control.controllers.nodelifecycle import UNREACHABLE, tolerates
from control.controllers.util import is_terminating, meta
from control.errors import NotFound
from control.informer import Informer, object_key

__all__ = ["TaintEvictionController"]

TaintKey = tuple[str, str, str]


def _no_execute(node: Obj) -> list[Obj]:
    return [t for t in (node.get("spec") or {}).get("taints") or []
            if t.get("effect") == "NoExecute" and t.get("key") != UNREACHABLE]


def _tkey(t: Obj) -> TaintKey:
    return (str(t.get("key", "")), str(t.get("value", "")), str(t.get("effect", "")))


class TaintEvictionController(Controller):
    name = "tainteviction"

    def __init__(self, client: Client, *, clock: Clock, recorder: EventRecorder,
                 nodes: Informer, pods: Informer) -> None:
        super().__init__(client, clock=clock, workers=1)
        self.recorder = recorder
        self.nodes, self.pods = nodes, pods
        self._first_seen: dict[str, dict[TaintKey, float]] = {}
        nodes.add_handler(on_add=lambda n: self.enqueue(object_key(n)),
                          on_update=lambda o, n: self.enqueue(object_key(n)),
                          on_delete=lambda n: self._first_seen.pop(object_key(n), None))
        pods.add_handler(on_add=self._pod, on_update=lambda o, n: self._pod(n))

    def _pod(self, pod: Obj) -> None:
        node = (pod.get("spec") or {}).get("nodeName")
        if node and node in self._first_seen:
            self.enqueue(node)

    def _seen_since(self, name: str, taints: list[Obj]) -> dict[TaintKey, float]:
        now = self.clock.monotonic()
        old = self._first_seen.get(name, {})
        fresh = {_tkey(t): old.get(_tkey(t), now) for t in taints}
        self._first_seen[name] = fresh
        return fresh

    async def reconcile(self, key: str) -> None:
        node = self.nodes.get(key)
        taints = _no_execute(node) if node is not None else []
        if not taints:
            self._first_seen.pop(key, None)
            return
        seen = self._seen_since(key, taints)
        now = self.clock.monotonic()
        waits: list[float] = []
        for pod in self.pods.list():
            if (pod.get("spec") or {}).get("nodeName") != key or is_terminating(pod):
                continue
            left = self._time_left(pod, taints, seen, now)
            if left is None:
                continue
            if left > 0:
                waits.append(left)
            else:
                await self._evict(pod, key)
        if waits:
            raise Requeue(min(waits) + 0.01)

    @staticmethod
    def _time_left(pod: Obj, taints: list[Obj], seen: dict[TaintKey, float],
                   now: float) -> float | None:
        """Seconds until the pod must go (0: now), None if it tolerates every taint."""
        lefts: list[float] = []
        for t in taints:
            ok, secs = tolerates(pod, t)
            if ok and secs is None:
                continue
            limit = secs if ok and secs is not None else 0.0
            lefts.append(max(0.0, limit - (now - seen[_tkey(t)])))
        return min(lefts) if lefts else None

    async def _evict(self, pod: Obj, node: str) -> None:
        pm = meta(pod)
        try:
            await self.client.delete("pods", pm["name"], namespace=pm["namespace"],
                                     preconditions_uid=pm.get("uid"))
        except NotFound:
            return
        await self.recorder.record(pod, "Normal", "TaintManagerEviction",
                                   f"Marking for deletion Pod {pm['namespace']}/{pm['name']}")
        self.log.info("%s: evicted %s/%s (NoExecute taint)", node, pm["namespace"], pm["name"])
