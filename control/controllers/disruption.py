"""PodDisruptionBudget status, kube-controller-manager's disruption controller: for each PDB,
the pods its selector matches in its namespace, how many are healthy (Ready, not terminating,
not just evicted), how many must be (`desiredHealthy` from minAvailable or maxUnavailable;
percentages and maxUnavailable scale against the replicas of the pods' controllers), and so
`disruptionsAllowed`, with the `DisruptionAllowed` condition. The Eviction API
(control/api/eviction.py) spends what this allows and records the pods it evicted in
`disruptedPods`; entries the informer has seen deleted, or older than 2 minutes, are dropped.

A PDB whose expected count cannot be computed (a pod without a scalable controller) fails safe
as upstream: disruptionsAllowed 0, condition False with reason SyncFailed and a Warning Event.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from control.clientbase import Client, Obj
from control.clock import Clock, parse_rfc3339, rfc3339
from control.controllers.base import Controller, Requeue
from control.controllers.daemonset_logic import scaled
from control.controllers.events import EventRecorder
from control.controllers.util import controller_ref, deep, is_pod_ready, meta
from control.errors import ApiError, NotFound
from control.informer import Informer, object_key
from control.models.selectors import selector_from_spec

__all__ = ["DisruptionController", "desired_healthy"]

DISRUPTED_TIMEOUT = timedelta(minutes=2)
_SCALABLE = {"ReplicaSet": "replicasets", "ReplicationController": "replicationcontrollers",
             "StatefulSet": "statefulsets", "Deployment": "deployments"}


class SyncFailed(Exception):
    pass


def desired_healthy(spec: Obj, pod_count: int, expected_scale: int | None) -> tuple[int, int]:
    """(expectedPods, desiredHealthy): getExpectedPodCount. `expected_scale` is the sum of
    the controllers' replicas (needed for maxUnavailable and percentages)."""
    if spec.get("maxUnavailable") is not None:
        expected = expected_scale or 0
        return expected, max(0, expected - scaled(spec["maxUnavailable"], expected, round_up=True))
    min_available = spec.get("minAvailable")
    if isinstance(min_available, int):
        return pod_count, min_available
    if min_available is not None:
        expected = expected_scale or 0
        return expected, scaled(min_available, expected, round_up=True)
    return pod_count, 0


def _needs_scale(spec: Obj) -> bool:
    return spec.get("maxUnavailable") is not None or isinstance(spec.get("minAvailable"), str)


class DisruptionController(Controller):
    name = "disruption"

    def __init__(self, client: Client, *, clock: Clock, recorder: EventRecorder,
                 pdbs: Informer, pods: Informer, workers: int = 1) -> None:
        super().__init__(client, clock=clock, workers=workers)
        self.recorder = recorder
        self.pdbs, self.pods = pdbs, pods
        pdbs.add_handler(on_add=self._pdb, on_update=lambda _o, n: self._pdb(n),
                         on_delete=self._pdb)
        pods.add_handler(on_add=self._pod, on_update=self._pod_updated, on_delete=self._pod)

    def _pdb(self, pdb: Obj) -> None:
        self.enqueue(object_key(pdb))

    def _pod(self, pod: Obj) -> None:
        ns = meta(pod).get("namespace")
        for pdb in self.pdbs.list(namespace=ns):
            try:
                sel = selector_from_spec((pdb.get("spec") or {}).get("selector"))
            except ApiError:
                continue
            if sel.matches(meta(pod).get("labels")):
                self.enqueue(object_key(pdb))

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if meta(old).get("labels") != meta(new).get("labels"):
            self._pod(old)
        self._pod(new)

    async def reconcile(self, key: str) -> None:
        pdb = self.pdbs.get(key)
        if pdb is None:
            return
        spec = pdb.get("spec") or {}
        ns = meta(pdb).get("namespace")
        try:   # a nil selector matches no pod, an empty one every pod (policy/v1)
            sel = None if spec.get("selector") is None else selector_from_spec(spec["selector"])
        except ApiError:
            sel = None
        pods = [] if sel is None else [p for p in self.pods.list(namespace=ns)
                                       if sel.matches(meta(p).get("labels"))]
        now = self.clock.now()
        try:
            scale = await self._expected_scale(pods) if _needs_scale(spec) else None
        except SyncFailed as exc:
            await self.recorder.record(pdb, "Warning", "CalculateExpectedPodCountFailed",
                                       f"Failed to calculate the number of expected pods: {exc}")
            await self._write(pdb, {"disruptionsAllowed": 0}, now, failed=str(exc))
            return
        expected, desired = desired_healthy(spec, len(pods), scale)
        disrupted, next_check = self._disrupted(pdb, pods, now)
        healthy = sum(1 for p in pods if is_pod_ready(p) and not meta(p).get("deletionTimestamp")
                      and meta(p)["name"] not in disrupted)
        await self._write(pdb, {
            "currentHealthy": healthy, "desiredHealthy": desired, "expectedPods": expected,
            "disruptionsAllowed": max(0, healthy - desired), "disruptedPods": disrupted}, now)
        if next_check is not None:
            raise Requeue(next_check)

    def _disrupted(self, pdb: Obj, pods: list[Obj],
                   now: datetime) -> tuple[dict[str, str], float | None]:
        """disruptedPods minus pods gone, terminating, or evicted more than 2 minutes ago."""
        live = {meta(p)["name"]: p for p in pods}
        out: dict[str, str] = {}
        soonest: float | None = None
        for name, stamp in ((pdb.get("status") or {}).get("disruptedPods") or {}).items():
            pod = live.get(name)
            when = parse_rfc3339(stamp)
            if pod is None or meta(pod).get("deletionTimestamp") or when is None:
                continue
            left = (when + DISRUPTED_TIMEOUT - now).total_seconds()
            if left <= 0:
                continue
            out[name] = stamp
            soonest = left if soonest is None else min(soonest, left)
        return out, soonest

    async def _expected_scale(self, pods: list[Obj]) -> int:
        """Sum of the replicas of the controllers of `pods` (a Deployment for its RS)."""
        seen: dict[str, int] = {}
        for pod in pods:
            ref = controller_ref(pod)
            if ref is None:
                raise SyncFailed(f"found no controllers for pod {meta(pod)['name']!r}")
            owner = await self._owner(meta(pod)["namespace"], ref)
            if owner is None:
                raise SyncFailed(f"found no controllers for pod {meta(pod)['name']!r}")
            seen[meta(owner).get("uid", "")] = int((owner.get("spec") or {}).get("replicas", 1))
        return sum(seen.values())

    async def _owner(self, ns: str, ref: Obj) -> Obj | None:
        resource = _SCALABLE.get(ref.get("kind", ""))
        if resource is None:
            return None
        try:
            owner = await self.client.get(resource, ref.get("name", ""), namespace=ns)
        except NotFound:
            return None
        up = controller_ref(owner)
        if ref.get("kind") == "ReplicaSet" and up is not None and up.get("kind") == "Deployment":
            return await self._owner(ns, up)
        return owner

    async def _write(self, pdb: Obj, new: Obj, now: datetime, *, failed: str = "") -> None:
        old_status = pdb.get("status") or {}
        allowed = int(new.get("disruptionsAllowed") or 0)
        gen = meta(pdb).get("generation", 1)
        ok = allowed > 0 and not failed
        reason = "SyncFailed" if failed else ("SufficientPods" if ok else "InsufficientPods")
        old = next((c for c in old_status.get("conditions") or []
                    if c.get("type") == "DisruptionAllowed"), None)
        since = (old or {}).get("lastTransitionTime")
        if not old or old.get("status") != ("True" if ok else "False") or not since:
            since = rfc3339(now)
        status = dict(old_status)
        status.update(new)
        status["observedGeneration"] = gen
        status["conditions"] = [{"type": "DisruptionAllowed", "status": "True" if ok else "False",
                                 "reason": reason, "message": failed, "observedGeneration": gen,
                                 "lastTransitionTime": since}]
        if not status.get("disruptedPods"):
            status.pop("disruptedPods", None)
        if status == old_status:
            return
        body = deep(pdb)
        body["status"] = status
        try:
            await self.client.update("poddisruptionbudgets", body, subresource="status")
        except NotFound:
            return
