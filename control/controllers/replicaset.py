"""ReplicaSet and ReplicationController: keep `spec.replicas` active pods matching the selector.

One reconciler serves both kinds (`ReplicaSetController(kind="ReplicationController")`):
claim pods (adopt orphans the selector matches, release owned pods it no longer matches),
create the missing ones (`<name>-<5 chars>` by generateName, owned with controller: true)
or delete the surplus (unscheduled, then not-ready, then newest first), then write status.
Failed and terminating pods do not count, so they are replaced. `Expectations` cover the
gap between a write and the informer seeing it.
"""

from __future__ import annotations

from typing import Any

from control.clientbase import Client, Obj
from control.clock import Clock, parse_rfc3339
from control.controllers.base import Controller, Requeue
from control.controllers.claims import ControllerRefManager
from control.controllers.events import EventRecorder
from control.controllers.podcontrol import PodControl
from control.controllers.util import (
    Expectations,
    available_in,
    controller_ref,
    deep,
    is_pod_active,
    is_pod_available,
    is_pod_ready,
    is_terminating,
    meta,
    owner_ref,
    pod_ready_since,
)
from control.errors import NotFound
from control.informer import Informer, object_key
from control.models.selectors import LabelSelector, selector_from_labels, selector_from_spec

__all__ = ["ReplicaSetController", "deletion_order", "pod_from_template"]

_BURST = 500
_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


class ReplicaSetController(Controller):
    def __init__(self, client: Client, *, clock: Clock, recorder: EventRecorder,
                 pods: Informer, owners: Informer, kind: str = "ReplicaSet",
                 workers: int = 2) -> None:
        self.name = "replicaset" if kind == "ReplicaSet" else "replicationcontroller"
        super().__init__(client, clock=clock, workers=workers)
        self.kind = kind
        self.resource = "replicasets" if kind == "ReplicaSet" else "replicationcontrollers"
        self.recorder = recorder
        self.pods = pods
        self.owners = owners
        self.expect = Expectations(clock=clock)
        self.refs = ControllerRefManager(client, "pods", log=self.log, owner_kind=kind)
        self.pod_control = PodControl(client, recorder=recorder, expect=self.expect)
        owners.add_handler(on_add=self._owner_changed, on_delete=self._owner_changed,
                           on_update=lambda old, new: self._owner_changed(new))
        pods.add_handler(on_add=self._pod_added, on_update=self._pod_updated,
                         on_delete=self._pod_added)

    # ---- event handlers: map changes to keys -------------------------------------------------

    def _owner_changed(self, obj: Obj) -> None:
        self.enqueue(object_key(obj))

    def _pod_added(self, pod: Obj) -> None:
        ref = controller_ref(pod)
        ns = meta(pod).get("namespace", "")
        if ref is not None:
            if ref.get("kind") == self.kind:
                self.enqueue(f"{ns}/{ref.get('name')}")
            return
        for owner in self.owners.list(namespace=ns):
            if self.selector(owner).matches(meta(pod).get("labels")):
                self.enqueue(object_key(owner))

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if (meta(old).get("labels") != meta(new).get("labels")
                or controller_ref(old) != controller_ref(new)):
            self._pod_added(old)
        self._pod_added(new)

    def selector(self, owner: Obj) -> LabelSelector:
        spec = owner.get("spec") or {}
        if self.kind == "ReplicaSet":
            return selector_from_spec(spec.get("selector"))
        labels = spec.get("selector") or ((spec.get("template") or {}).get("metadata")
                                          or {}).get("labels")
        return selector_from_labels(labels) if labels else LabelSelector.nothing()

    # ---- reconcile -------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        owner = self.owners.get(key)
        if owner is None:
            self.expect.forget(key)
            return
        pods = await self._claim(owner)
        by_name = {meta(p)["name"]: p for p in pods}
        adds, dels = self.expect.pending(key, by_name)
        active = [p for p in pods if is_pod_active(p) and meta(p)["name"] not in dels]
        if not is_terminating(owner):
            want = int((owner.get("spec") or {}).get("replicas", 1))
            diff = want - len(active) - len(adds)
            if diff > 0:
                await self._create_pods(key, owner, diff)
            elif diff < 0:
                await self._delete_pods(key, owner, deletion_order(active)[:-diff])
        await self._write_status(owner, [p for p in pods if is_pod_active(p)])
        self._requeue_for_availability(owner, pods)

    async def _claim(self, owner: Obj) -> list[Obj]:
        pods = self.pods.list(namespace=meta(owner).get("namespace"))
        return await self.refs.claim(owner, pods, self.selector(owner), can_adopt=is_pod_active)

    async def _create_pods(self, key: str, owner: Obj, count: int) -> None:
        await self.pod_control.create_batches(
            key, owner, (pod_from_template(owner) for _ in range(min(count, _BURST))))

    async def _delete_pods(self, key: str, owner: Obj, victims: list[Obj]) -> None:
        await self.pod_control.delete(key, owner, victims)

    async def _write_status(self, owner: Obj, active: list[Obj]) -> None:
        now = self.clock.now()
        spec = owner.get("spec") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        tmpl_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        status = dict(owner.get("status") or {})
        new = {
            "replicas": len(active),
            "fullyLabeledReplicas": sum(
                1 for p in active
                if all((meta(p).get("labels") or {}).get(k) == v for k, v in tmpl_labels.items())),
            "readyReplicas": sum(1 for p in active if is_pod_ready(p)),
            "availableReplicas": sum(1 for p in active if is_pod_available(p, min_ready, now)),
            "observedGeneration": meta(owner).get("generation", 1),
        }
        if all(status.get(k, 0) == v for k, v in new.items()):
            return
        status.update(new)
        body = deep(owner)
        body["status"] = status
        try:
            await self.client.update(self.resource, body, subresource="status")
        except NotFound:
            return

    def _requeue_for_availability(self, owner: Obj, pods: list[Obj]) -> None:
        min_ready = int((owner.get("spec") or {}).get("minReadySeconds") or 0)
        if min_ready <= 0:
            return
        now = self.clock.now()
        waits = [w for p in pods if is_pod_active(p)
                 for w in [available_in(p, min_ready, now)] if w]
        if waits:
            raise Requeue(min(waits) + 0.01)


def pod_from_template(owner: Obj) -> Obj:
    """A new pod for `owner` from its template: generateName `<owner>-`, its labels and
    annotations, its spec, and a controller ownerReference."""
    om = meta(owner)
    template = deep((owner.get("spec") or {}).get("template") or {})
    tm = template.get("metadata") or {}
    pod_meta: dict[str, Any] = {"generateName": f"{om['name']}-", "namespace": om["namespace"],
                                "ownerReferences": [owner_ref(owner)]}
    for field in ("labels", "annotations", "finalizers"):
        if tm.get(field):
            pod_meta[field] = tm[field]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta,
            "spec": template.get("spec") or {}}


def deletion_order(pods: list[Obj]) -> list[Obj]:
    """Pods sorted best-to-delete first: unscheduled, then Pending/Unknown before Running,
    not-ready before ready, recently ready before long ready, more restarts, newest."""
    def rank(pod: Obj) -> tuple[Any, ...]:
        status = pod.get("status") or {}
        since = pod_ready_since(pod)
        created = parse_rfc3339(meta(pod).get("creationTimestamp"))
        restarts = sum(int(c.get("restartCount") or 0)
                       for c in status.get("containerStatuses") or [])
        return (bool((pod.get("spec") or {}).get("nodeName")),
                _PHASE_RANK.get(status.get("phase", "Pending"), 0),
                is_pod_ready(pod),
                -(since.timestamp() if since else 0.0),
                -restarts,
                -(created.timestamp() if created else 0.0),
                meta(pod).get("name", ""))
    return sorted(pods, key=rank)
