"""Deployment: roll a template out through ReplicaSets (RollingUpdate or Recreate).

Each reconcile claims the ReplicaSets the Deployment owns, finds the one whose template equals
the Deployment's (compared and hashed normalised, so `rollout undo` reuses the old one and
gives it the next revision), creates it if missing (`<name>-<pod-template-hash>`), then takes
one rollout step: scale the new ReplicaSet up within maxSurge and the old ones down within
maxUnavailable, using ReplicaSet statuses for availability. Paused Deployments only scale.
Status, conditions and revision-history cleanup follow. The arithmetic is in `rollout.py`.
"""

from __future__ import annotations

from control.clientbase import Client, Obj
from control.clock import Clock
from control.controllers import rollout as ro
from control.controllers.base import Controller, Requeue
from control.controllers.claims import ControllerRefManager
from control.controllers.deployment_status import compute_status, deadline_left
from control.controllers.events import EventRecorder
from control.controllers.util import controller_ref, deep, is_terminating, meta, owner_ref
from control.errors import AlreadyExists, NotFound
from control.informer import Informer, object_key
from control.models.selectors import selector_from_spec

__all__ = ["DeploymentController"]

_SKIP_ANNOTATIONS = {ro.REVISION, ro.REVISION_HISTORY, ro.DESIRED_REPLICAS, ro.MAX_REPLICAS,
                     "kubectl.kubernetes.io/last-applied-configuration"}


class DeploymentController(Controller):
    name = "deployment"

    def __init__(self, client: Client, *, clock: Clock, recorder: EventRecorder,
                 deployments: Informer, replicasets: Informer, pods: Informer,
                 workers: int = 2) -> None:
        super().__init__(client, clock=clock, workers=workers)
        self.recorder = recorder
        self.deployments = deployments
        self.replicasets = replicasets
        self.pods = pods
        self._written: dict[str, Obj] = {}     # RS key -> our last write (fresher than cache)
        self.refs = ControllerRefManager(client, "replicasets", log=self.log,
                                         owner_kind="Deployment", on_written=self._remember)
        deployments.add_handler(on_add=self._d_changed, on_delete=self._d_changed,
                                on_update=lambda old, new: self._d_changed(new))
        replicasets.add_handler(on_add=self._rs_changed, on_delete=self._rs_deleted,
                                on_update=self._rs_updated)
        pods.add_handler(on_delete=self._pod_deleted)

    def _d_changed(self, d: Obj) -> None:
        self.enqueue(object_key(d))

    def _rs_changed(self, rs: Obj) -> None:
        ns = meta(rs).get("namespace")
        ref = controller_ref(rs)
        if ref is not None:
            if ref.get("kind") == "Deployment":
                self.enqueue(f"{ns}/{ref['name']}")
            return
        for d in self.deployments.list(namespace=ns):
            if selector_from_spec((d.get("spec") or {}).get("selector")).matches(
                    meta(rs).get("labels")):
                self.enqueue(object_key(d))

    def _rs_deleted(self, rs: Obj) -> None:
        self._written.pop(object_key(rs), None)
        self._rs_changed(rs)

    def _rs_updated(self, old: Obj, new: Obj) -> None:
        if controller_ref(old) != controller_ref(new):
            self._rs_changed(old)
        self._rs_changed(new)

    def _pod_deleted(self, pod: Obj) -> None:
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.replicasets.get(f"{meta(pod).get('namespace')}/{ref['name']}")
        if rs is not None:
            self._rs_changed(rs)

    # ---- reconcile ---------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        d = self.deployments.get(key)
        if d is None or is_terminating(d):
            return
        d = deep(d)
        generation = meta(d).get("generation", 1)
        all_rs = await self._claim(d)
        new_rs, old_rs = self._split(d, all_rs)
        spec = d.get("spec") or {}
        created = False
        active = [rs for rs in all_rs if ro._replicas(rs) > 0]
        if len(active) > 1 and ro.is_scaling_event(d, active):
            for name, size in ro.proportional_targets(d, active).items():
                rs = next(r for r in active if meta(r)["name"] == name)
                await self._scale(d, self._refresh(rs) or rs, size, annotate=True)
        elif spec.get("paused"):
            await self._scale_paused(d, new_rs, old_rs)
        else:
            if new_rs is None:
                new_rs = await self._create_new_rs(d, old_rs)
                created = True
            else:
                new_rs = await self._sync_new_rs(d, new_rs, old_rs)
            if (spec.get("strategy") or {}).get("type") == "Recreate":
                await self._recreate_step(d, new_rs, old_rs)
            else:
                await self._rolling_step(d, new_rs, old_rs)
            d = await self._ensure_revision_on_deployment(d, new_rs)
        new_rs = self._refresh(new_rs)
        old_rs = [self._refresh(rs) or rs for rs in old_rs]
        if (not spec.get("paused") and new_rs is not None
                and all(ro._replicas(rs) == 0 for rs in old_rs)):
            await self._cleanup(d, new_rs, old_rs)
        status = await self._write_status(d, new_rs, old_rs, created=created,
                                          generation=generation)
        progressing = next((c for c in status.get("conditions") or []
                            if c.get("type") == "Progressing"), None)
        left = deadline_left(d, progressing, self.clock.now())
        if left:                     # look again when the progress deadline would pass
            raise Requeue(left + 0.01)

    def _split(self, d: Obj, all_rs: list[Obj]) -> tuple[Obj | None, list[Obj]]:
        template = (d.get("spec") or {}).get("template")
        matching = [rs for rs in all_rs
                    if ro.same_template((rs.get("spec") or {}).get("template"), template)]
        matching.sort(key=lambda rs: (meta(rs).get("creationTimestamp", ""), meta(rs)["name"]))
        new_rs = matching[0] if matching else None
        return new_rs, [rs for rs in all_rs if rs is not new_rs]

    def _refresh(self, rs: Obj | None) -> Obj | None:
        """The fresher of the cached ReplicaSet and the one our last write returned."""
        if rs is None:
            return None
        key = object_key(rs)
        cached = self.replicasets.get(key)
        written = self._written.get(key)
        best = rs
        for cand in (cached, written):
            if cand is not None and meta(cand).get("uid") == meta(rs).get("uid") and \
                    _rv(cand) > _rv(best):
                best = cand
        return best

    async def _claim(self, d: Obj) -> list[Obj]:
        selector = selector_from_spec((d.get("spec") or {}).get("selector"))
        candidates = [self._refresh(rs) or rs
                      for rs in self.replicasets.list(namespace=meta(d).get("namespace"))]
        return await self.refs.claim(d, candidates, selector)

    def _remember(self, rs: Obj) -> None:
        self._written[object_key(rs)] = rs

    async def _patch_rs(self, rs: Obj, patch: Obj) -> Obj | None:
        m = meta(rs)
        try:
            out = await self.client.patch("replicasets", m["name"], patch,
                                          namespace=m.get("namespace"))
        except NotFound:
            return None
        self._written[object_key(out)] = out
        return out

    # ---- the new ReplicaSet ------------------------------------------------------------------

    def _rs_annotations(self, d: Obj, revision: int) -> dict[str, str]:
        surge, _ = ro.resolve_surge_unavailable(d)
        want = int((d.get("spec") or {}).get("replicas", 1))
        out = {k: v for k, v in (meta(d).get("annotations") or {}).items()
               if k not in _SKIP_ANNOTATIONS}
        out[ro.REVISION] = str(revision)
        out[ro.DESIRED_REPLICAS] = str(want)
        out[ro.MAX_REPLICAS] = str(want + surge)
        return out

    async def _create_new_rs(self, d: Obj, old_rs: list[Obj]) -> Obj:
        dm, spec = meta(d), d.get("spec") or {}
        collisions = int((d.get("status") or {}).get("collisionCount") or 0)
        h = ro.template_hash(spec.get("template"), collisions)
        template = deep(spec.get("template") or {})
        template.setdefault("metadata", {}).setdefault("labels", {})[ro.HASH_LABEL] = h
        selector = deep(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[ro.HASH_LABEL] = h
        revision = max((ro.revision_of(rs) for rs in old_rs), default=0) + 1
        rs: Obj = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{dm['name']}-{h}", "namespace": dm["namespace"],
                         "labels": dict(template["metadata"]["labels"]),
                         "annotations": self._rs_annotations(d, revision),
                         "ownerReferences": [owner_ref(d)]},
            "spec": {"replicas": 0, "minReadySeconds": int(spec.get("minReadySeconds") or 0),
                     "selector": selector, "template": template},
        }
        try:
            created = await self.client.create("replicasets", rs, namespace=dm["namespace"])
        except AlreadyExists:
            await self._bump_collision(d, collisions)
            raise Requeue(0.0) from None
        self._written[object_key(created)] = created
        self.log.info("%s/%s: created ReplicaSet %s (revision %d)", dm["namespace"],
                      dm["name"], meta(created)["name"], revision)
        return created

    async def _bump_collision(self, d: Obj, collisions: int) -> None:
        """A ReplicaSet of that name exists with another template (or another owner)."""
        body = deep(d)
        body.setdefault("status", {})["collisionCount"] = collisions + 1
        await self.client.update("deployments", body, subresource="status")

    async def _sync_new_rs(self, d: Obj, new_rs: Obj, old_rs: list[Obj]) -> Obj:
        """Give a reused ReplicaSet the next revision (remembering its old one in
        revision-history), and keep its annotations and minReadySeconds in step."""
        max_old = max((ro.revision_of(rs) for rs in old_rs), default=0)
        current = ro.revision_of(new_rs)
        revision = current if current > max_old else max_old + 1
        wanted = self._rs_annotations(d, revision)
        have = meta(new_rs).get("annotations") or {}
        if revision != current and current:
            history = [h for h in have.get(ro.REVISION_HISTORY, "").split(",") if h]
            wanted[ro.REVISION_HISTORY] = ",".join(history + [str(current)])
        elif have.get(ro.REVISION_HISTORY):
            wanted[ro.REVISION_HISTORY] = have[ro.REVISION_HISTORY]
        if revision == current:   # only a rollout step moves desired/max annotations
            for k in (ro.DESIRED_REPLICAS, ro.MAX_REPLICAS):
                if k in have:
                    wanted[k] = have[k]
        patch: Obj = {}
        if any(have.get(k) != v for k, v in wanted.items()):
            patch["metadata"] = {"annotations": wanted}
        min_ready = int((d.get("spec") or {}).get("minReadySeconds") or 0)
        if int((new_rs.get("spec") or {}).get("minReadySeconds") or 0) != min_ready:
            patch["spec"] = {"minReadySeconds": min_ready}
        if not patch:
            return new_rs
        return await self._patch_rs(new_rs, patch) or new_rs

    async def _ensure_revision_on_deployment(self, d: Obj, new_rs: Obj | None) -> Obj:
        """The Deployment carries the revision of its new ReplicaSet; returns it as written."""
        revision = (meta(new_rs or {}).get("annotations") or {}).get(ro.REVISION)
        if not revision or (meta(d).get("annotations") or {}).get(ro.REVISION) == revision:
            return d
        dm = meta(d)
        try:
            return await self.client.patch("deployments", dm["name"], {
                "metadata": {"annotations": {ro.REVISION: revision}}},
                namespace=dm["namespace"])
        except NotFound:
            return d

    # ---- rollout steps -----------------------------------------------------------------------

    async def _scale(self, d: Obj, rs: Obj, replicas: int, *, annotate: bool = False) -> Obj:
        """Set spec.replicas (and the desired/max-replicas annotations); with `annotate`,
        rewrite the annotations even when the size does not change."""
        current = ro._replicas(rs)
        if current == replicas and not annotate:
            return rs
        surge, _ = ro.resolve_surge_unavailable(d)
        want = int((d.get("spec") or {}).get("replicas", 1))
        out = await self._patch_rs(rs, {
            "spec": {"replicas": replicas},
            "metadata": {"annotations": {ro.DESIRED_REPLICAS: str(want),
                                         ro.MAX_REPLICAS: str(want + surge)}}}) or rs
        if current == replicas:
            return out
        direction = "up" if replicas > current else "down"
        await self.recorder.record(d, "Normal", "ScalingReplicaSet",
                                   f"Scaled {direction} replica set {meta(rs)['name']} "
                                   f"from {current} to {replicas}")
        return out

    async def _rolling_step(self, d: Obj, new_rs: Obj, old_rs: list[Obj]) -> None:
        old_rs = [self._refresh(rs) or rs for rs in old_rs]
        new_rs = self._refresh(new_rs) or new_rs
        target = ro.new_rs_target(d, new_rs, old_rs + [new_rs])
        new_rs = await self._scale(d, new_rs, target)
        downs = ro.old_rs_scale_down(d, new_rs, old_rs, old_rs + [new_rs])
        for rs in old_rs:
            await self._scale(d, rs, downs[meta(rs)["name"]])

    async def _recreate_step(self, d: Obj, new_rs: Obj, old_rs: list[Obj]) -> None:
        for rs in old_rs:
            await self._scale(d, self._refresh(rs) or rs, 0)
        old_uids = {meta(rs).get("uid") for rs in old_rs}
        ns = meta(d).get("namespace")
        still = [p for p in self.pods.list(namespace=ns)
                 if (controller_ref(p) or {}).get("uid") in old_uids
                 and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        if still:
            return      # a pod deletion re-enqueues us
        want = int((d.get("spec") or {}).get("replicas", 1))
        await self._scale(d, self._refresh(new_rs) or new_rs, want)

    async def _scale_paused(self, d: Obj, new_rs: Obj | None, old_rs: list[Obj]) -> None:
        """Paused: no rollout, but `kubectl scale` still applies when one RS is active."""
        candidates = [rs for rs in old_rs + ([new_rs] if new_rs else []) if ro._replicas(rs)]
        if len(candidates) > 1:
            return
        target = new_rs if new_rs is not None else (candidates[0] if candidates else None)
        if target is not None:
            await self._scale(d, self._refresh(target) or target,
                              int((d.get("spec") or {}).get("replicas", 1)))

    async def _cleanup(self, d: Obj, new_rs: Obj, old_rs: list[Obj]) -> None:
        limit = (d.get("spec") or {}).get("revisionHistoryLimit")
        limit = 10 if limit is None else int(limit)
        idle = [rs for rs in old_rs if rs is not None and ro._replicas(rs) == 0
                and not (rs.get("status") or {}).get("replicas") and not is_terminating(rs)]
        idle.sort(key=ro.revision_of)
        for rs in idle[:max(0, len(idle) - limit)]:
            m = meta(rs)
            try:
                await self.client.delete("replicasets", m["name"], namespace=m["namespace"],
                                         preconditions_uid=m.get("uid"))
                self.log.info("%s: deleted old ReplicaSet %s (revisionHistoryLimit %d)",
                              object_key(d), m["name"], limit)
            except NotFound:
                pass

    async def _write_status(self, d: Obj, new_rs: Obj | None, old_rs: list[Obj], *,
                            created: bool, generation: int) -> Obj:
        status = compute_status(d, new_rs, [rs for rs in old_rs if rs is not None],
                                now=self.clock.now(), created=created,
                                observed_generation=generation)
        if status == d.get("status"):
            return status
        body = deep(d)
        body["status"] = status
        try:
            await self.client.update("deployments", body, subresource="status")
        except NotFound:
            pass
        return status


def _rv(obj: Obj) -> int:
    try:
        return int(meta(obj).get("resourceVersion") or 0)
    except ValueError:
        return 0

