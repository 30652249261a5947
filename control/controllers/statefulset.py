"""StatefulSet: pods with stable names (`web-0` ... `web-N-1`), DNS identity under the
governing Service and their own PersistentVolumeClaims, rolled out through ControllerRevisions.

Each reconcile (upstream's defaultStatefulSetControl.UpdateStatefulSet, simplified):
claim pods and revisions; find the current and update revisions; then, ascending, replace
failed pods and create missing ones (their claims first), and, descending, delete the
condemned ordinals >= replicas. OrderedReady stops at the first pod that is not Running and
Ready (for minReadySeconds), one change at a time; Parallel does not wait. Then the update:
RollingUpdate deletes outdated pods from the highest ordinal down to the partition (up to
maxUnavailable at once, waiting for health in between); OnDelete leaves it to the user.
Status and history truncation close the pass. Identity is in statefulset_pods.py.
"""

from __future__ import annotations

from control.clientbase import Client, Obj
from control.clock import Clock
from control.controllers.base import Controller, Requeue
from control.controllers.claims import ControllerRefManager
from control.controllers.events import EventRecorder
from control.controllers.revisions import RevisionHistory, apply_revision
from control.controllers.rollout import scaled_int_or_percent
from control.controllers.statefulset_pods import (
    claims_for,
    compute_status,
    is_failed,
    is_healthy,
    new_pod,
    ordinal_of,
    pod_revision,
    ref_to,
)
from control.controllers.util import available_in, controller_ref, deep, is_terminating, meta
from control.errors import AlreadyExists, Conflict, NotFound
from control.informer import Informer, object_key
from control.models.selectors import selector_from_spec

__all__ = ["StatefulSetController"]


class _Wait(Exception):
    """This pass stops here (OrderedReady waits for a pod); status is still written."""


class StatefulSetController(Controller):
    name = "statefulset"

    def __init__(self, client: Client, *, clock: Clock, recorder: EventRecorder,
                 statefulsets: Informer, pods: Informer, revisions: Informer,
                 claims: Informer, workers: int = 2) -> None:
        super().__init__(client, clock=clock, workers=workers)
        self.recorder = recorder
        self.sets = statefulsets
        self.pods = pods
        self.revisions = revisions
        self.claims = claims
        self.history = RevisionHistory(client, log=self.log, owner_kind="StatefulSet")
        self.refs = ControllerRefManager(client, "pods", log=self.log, owner_kind="StatefulSet")
        statefulsets.add_handler(on_add=self._set_changed, on_delete=self._set_changed,
                                 on_update=lambda _o, new: self._set_changed(new))
        pods.add_handler(on_add=self._pod_changed, on_delete=self._pod_changed,
                         on_update=self._pod_updated)

    def _set_changed(self, sts: Obj) -> None:
        self.enqueue(object_key(sts))

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if controller_ref(old) != controller_ref(new) or \
                meta(old).get("labels") != meta(new).get("labels"):
            self._pod_changed(old)
        self._pod_changed(new)

    def _pod_changed(self, pod: Obj) -> None:
        ns = meta(pod).get("namespace")
        ref = controller_ref(pod)
        if ref is not None:
            if ref.get("kind") == "StatefulSet":
                self.enqueue(f"{ns}/{ref.get('name')}")
            return
        for sts in self.sets.list(namespace=ns):
            if selector_from_spec((sts.get("spec") or {}).get("selector")).matches(
                    meta(pod).get("labels")):
                self.enqueue(object_key(sts))

    # ---- reconcile ---------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        sts = self.sets.get(key)
        if sts is None or is_terminating(sts):
            return
        sts = deep(sts)
        ns = meta(sts)["namespace"]
        selector = selector_from_spec((sts.get("spec") or {}).get("selector"))
        pods = await self.refs.claim(sts, self.pods.list(namespace=ns), selector)
        revs = await self.history.claim(sts, self.revisions.list(namespace=ns), selector)
        status = sts.get("status") or {}
        collisions = int(status.get("collisionCount") or 0)
        update, revs, collisions = await self.history.ensure(sts, revs, collisions)
        current = next((r for r in revs if meta(r)["name"] == status.get("currentRevision")),
                       update)
        mine = [p for p in pods if ordinal_of(meta(sts)["name"], p) is not None]
        try:
            await self._sync_pods(sts, mine, current, update)
        except _Wait:
            pass
        pods = [p for p in self.pods.list(namespace=ns)
                if (controller_ref(p) or {}).get("uid") == meta(sts).get("uid")]
        new_status = compute_status(sts, pods, current=meta(current)["name"],
                                    update=meta(update)["name"], collisions=collisions,
                                    now=self.clock.now())
        await self._write_status(sts, new_status)
        live = {new_status["currentRevision"], new_status["updateRevision"]}
        live |= {pod_revision(p) for p in pods}
        await self.history.truncate(sts, revs, live,
                                    (sts.get("spec") or {}).get("revisionHistoryLimit"))
        self._requeue_for_availability(sts, pods)

    async def _sync_pods(self, sts: Obj, pods: list[Obj], current: Obj, update: Obj) -> None:
        spec, name = sts.get("spec") or {}, meta(sts)["name"]
        want = int(spec.get("replicas", 1))
        ordered = spec.get("podManagementPolicy", "OrderedReady") != "Parallel"
        min_ready = int(spec.get("minReadySeconds") or 0)
        now = self.clock.now()
        by_ord: dict[int, Obj] = {}
        for p in pods:
            i = ordinal_of(name, p)
            if i is not None:
                by_ord[i] = p
        strategy = spec.get("updateStrategy") or {}
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0) \
            if strategy.get("type", "RollingUpdate") == "RollingUpdate" else 0
        current_set, update_set = apply_revision(sts, current), apply_revision(sts, update)
        for i in range(want):
            pod = by_ord.get(i)
            if pod is not None and is_failed(pod) and not is_terminating(pod):
                await self._delete_pod(sts, pod, why="failed")
                by_ord.pop(i)
                pod = None
                if ordered:
                    raise _Wait
            if pod is None:
                use_current = (strategy.get("type", "RollingUpdate") == "RollingUpdate"
                               and i < partition)
                rev = current if use_current else update
                await self._create_pod(sts, current_set if use_current else update_set,
                                       i, rev)
                if ordered:
                    raise _Wait
                continue
            if (pod.get("status") or {}).get("phase", "Pending") == "Pending":
                await self._ensure_claims(sts, i)     # upstream: only for pending pods
            if ordered and (is_terminating(pod) or not is_healthy(pod, min_ready, now)):
                raise _Wait
        await self._scale_down(sts, by_ord, want, ordered, min_ready)
        if strategy.get("type", "RollingUpdate") == "RollingUpdate":
            await self._rolling_update(sts, by_ord, want, partition, update, min_ready)

    async def _scale_down(self, sts: Obj, by_ord: dict[int, Obj], want: int, ordered: bool,
                          min_ready: int) -> None:
        now = self.clock.now()
        condemned = sorted((i for i in by_ord if i >= want), reverse=True)
        for i in condemned:
            pod = by_ord[i]
            if is_terminating(pod):
                if ordered:
                    raise _Wait
                continue
            unhealthy = [j for j in condemned if not is_healthy(by_ord[j], min_ready, now)]
            if ordered and unhealthy and unhealthy[0] != i:
                raise _Wait            # upstream: only the first unhealthy condemned pod goes
            await self._release_claims(sts, pod, i)
            await self._delete_pod(sts, pod, why="scale down")
            if ordered:
                raise _Wait

    async def _rolling_update(self, sts: Obj, by_ord: dict[int, Obj], want: int,
                              partition: int, update: Obj, min_ready: int) -> None:
        now = self.clock.now()
        rolling = ((sts.get("spec") or {}).get("updateStrategy") or {}).get("rollingUpdate") or {}
        max_unavailable = max(1, scaled_int_or_percent(rolling.get("maxUnavailable"), want,
                                                       round_up=False, default=1))
        targets = [i for i in range(want - 1, partition - 1, -1) if i in by_ord]
        unavailable = sum(1 for i in range(want)
                          if i not in by_ord or not is_healthy(by_ord[i], min_ready, now))
        for i in targets:
            pod = by_ord[i]
            if pod_revision(pod) != meta(update)["name"] and not is_terminating(pod):
                if unavailable >= max_unavailable and is_healthy(pod, min_ready, now):
                    return
                await self._delete_pod(sts, pod, why="update")
                if is_healthy(pod, min_ready, now):
                    unavailable += 1
                if max_unavailable == 1:
                    return
                continue
            if not is_healthy(pod, min_ready, now) and max_unavailable == 1:
                return

    # ---- writes ------------------------------------------------------------------------------

    async def _ensure_claims(self, sts: Obj, ordinal: int) -> None:
        """Create the pod's missing PVCs; re-own them if whenScaled kept them for a pod."""
        for claim in claims_for(sts, ordinal):
            m = meta(claim)
            cached = self.claims.get(f"{m['namespace']}/{m['name']}")
            if cached is not None:
                if is_terminating(cached):
                    raise _Wait        # upstream: wait until the old claim is gone
                await self._drop_pod_owner(cached)
                continue
            try:
                await self.client.create("persistentvolumeclaims", claim,
                                         namespace=m["namespace"])
            except AlreadyExists:
                continue
            await self.recorder.record(sts, "Normal", "SuccessfulCreate",
                                       f"create Claim {m['name']} Pod {meta(sts)['name']}-"
                                       f"{ordinal} in StatefulSet {meta(sts)['name']} success")

    async def _drop_pod_owner(self, claim: Obj) -> None:
        refs = meta(claim).get("ownerReferences") or []
        keep = [r for r in refs if r.get("kind") != "Pod"]
        if len(keep) == len(refs):
            return
        m = meta(claim)
        try:
            await self.client.patch("persistentvolumeclaims", m["name"],
                                    {"metadata": {"ownerReferences": keep}},
                                    namespace=m["namespace"])
        except NotFound:
            pass

    async def _release_claims(self, sts: Obj, pod: Obj, ordinal: int) -> None:
        """whenScaled: Delete: the condemned pod owns its claims, so they go with it."""
        retention = (sts.get("spec") or {}).get("persistentVolumeClaimRetentionPolicy") or {}
        if retention.get("whenScaled") != "Delete":
            return
        for claim in claims_for(sts, ordinal):
            m = meta(claim)
            cached = self.claims.get(f"{m['namespace']}/{m['name']}")
            if cached is None:
                continue
            refs = [r for r in meta(cached).get("ownerReferences") or []
                    if r.get("kind") != "Pod"] + [ref_to(pod)]
            try:
                await self.client.patch("persistentvolumeclaims", m["name"],
                                        {"metadata": {"ownerReferences": refs}},
                                        namespace=m["namespace"])
            except NotFound:
                pass

    async def _create_pod(self, sts: Obj, template_set: Obj, ordinal: int,
                          revision: Obj) -> None:
        await self._ensure_claims(sts, ordinal)
        pod = new_pod(template_set, ordinal, revision)
        ns, name = meta(sts)["namespace"], meta(pod)["name"]
        try:
            await self.client.create("pods", pod, namespace=ns)
        except AlreadyExists:
            return                     # the cache is behind: we see it next time
        await self.recorder.record(sts, "Normal", "SuccessfulCreate",
                                   f"create Pod {name} in StatefulSet {meta(sts)['name']} "
                                   "successful")

    async def _delete_pod(self, sts: Obj, pod: Obj, *, why: str) -> None:
        m = meta(pod)
        try:
            await self.client.delete("pods", m["name"], namespace=m["namespace"],
                                     preconditions_uid=m.get("uid"))
        except (NotFound, Conflict):
            return
        self.log.info("%s: deleted pod %s (%s)", object_key(sts), m["name"], why)
        await self.recorder.record(sts, "Normal", "SuccessfulDelete",
                                   f"delete Pod {m['name']} in StatefulSet {meta(sts)['name']} "
                                   "successful")

    async def _write_status(self, sts: Obj, status: Obj) -> None:
        old = sts.get("status") or {}
        if all(old.get(k) == v for k, v in status.items()):
            return
        body = deep(sts)
        body["status"] = {**old, **status}
        try:
            await self.client.update("statefulsets", body, subresource="status")
        except NotFound:
            pass

    def _requeue_for_availability(self, sts: Obj, pods: list[Obj]) -> None:
        min_ready = int((sts.get("spec") or {}).get("minReadySeconds") or 0)
        if min_ready <= 0:
            return
        now = self.clock.now()
        waits = [w for p in pods for w in [available_in(p, min_ready, now)] if w]
        if waits:
            raise Requeue(min(waits) + 0.01)
