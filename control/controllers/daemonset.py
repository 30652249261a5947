"""DaemonSet (apps/v1): one pod per eligible node, as kube-controller-manager's daemon
controller (syncDaemonSet): claim pods and ControllerRevisions, make sure the revision of the
current template exists (its hash labels new pods: `controller-revision-hash`), then per node
create the missing pod (pinned by node affinity, bound by the scheduler) or delete failed,
duplicate and misplaced ones; when nothing is in flight, advance a RollingUpdate (OnDelete
only replaces pods the user deleted); trim the history to revisionHistoryLimit; write status.

Reacts to DaemonSets, their pods, and nodes joining, leaving or changing labels, taints or
readiness. The decisions are pure functions in daemonset_logic.py; this module does the I/O.
"""

from __future__ import annotations

from typing import Any

from control.clientbase import Client, Obj
from control.clock import Clock
from control.controllers import daemonset_logic as dl
from control.controllers.base import Controller, Requeue
from control.controllers.claims import ControllerRefManager
from control.controllers.events import EventRecorder
from control.controllers.podcontrol import PodControl
from control.controllers.revisions import HASH_LABEL, POD_REVISION_LABEL, RevisionHistory
from control.controllers.util import (
    Expectations,
    available_in,
    controller_ref,
    deep,
    is_pod_active,
    is_terminating,
    meta,
)
from control.errors import ApiError, NotFound
from control.informer import Informer, object_key
from control.models.selectors import LabelSelector, selector_from_spec

__all__ = ["DaemonSetController"]

_BURST = 100


def _node_view(node: Obj) -> tuple[Any, ...]:
    ready = [c.get("status") for c in (node.get("status") or {}).get("conditions") or []
             if c.get("type") == "Ready"]
    return (meta(node).get("labels"), (node.get("spec") or {}).get("taints"),
            (node.get("spec") or {}).get("unschedulable"), ready)


class DaemonSetController(Controller):
    name = "daemonset"

    def __init__(self, client: Client, *, clock: Clock, recorder: EventRecorder,
                 daemonsets: Informer, pods: Informer, nodes: Informer, revisions: Informer,
                 workers: int = 2) -> None:
        super().__init__(client, clock=clock, workers=workers)
        self.recorder = recorder
        self.dsets, self.pods, self.nodes, self.revisions = daemonsets, pods, nodes, revisions
        self.expect = Expectations(clock=clock)
        self.podcontrol = PodControl(client, recorder=recorder, expect=self.expect)
        self.refs = ControllerRefManager(client, "pods", log=self.log, owner_kind="DaemonSet")
        self.history = RevisionHistory(client, log=self.log, owner_kind="DaemonSet")
        self._backoff: dict[str, tuple[float, float]] = {}   # ds/node -> (delay, until)
        daemonsets.add_handler(on_add=self._ds, on_delete=self._ds,
                               on_update=lambda _o, n: self._ds(n))
        pods.add_handler(on_add=self._pod, on_delete=self._pod, on_update=self._pod_updated)
        nodes.add_handler(on_add=lambda _n: self._all(), on_delete=lambda _n: self._all(),
                          on_update=self._node_updated)

    # ---- event handlers ----------------------------------------------------------------------

    def _ds(self, ds: Obj) -> None:
        self.enqueue(object_key(ds))

    def _all(self) -> None:
        for ds in self.dsets.list():
            self.enqueue(object_key(ds))

    def _node_updated(self, old: Obj, new: Obj) -> None:
        if _node_view(old) != _node_view(new):
            self._all()

    def _pod(self, pod: Obj) -> None:
        ref = controller_ref(pod)
        ns = meta(pod).get("namespace", "")
        if ref is not None:
            if ref.get("kind") == "DaemonSet":
                self.enqueue(f"{ns}/{ref.get('name')}")
            return
        for ds in self.dsets.list(namespace=ns):
            if self.selector(ds).matches(meta(pod).get("labels")):
                self.enqueue(object_key(ds))

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if meta(old).get("labels") != meta(new).get("labels"):
            self._pod(old)
        self._pod(new)

    @staticmethod
    def selector(ds: Obj) -> LabelSelector:
        try:
            return selector_from_spec((ds.get("spec") or {}).get("selector"))
        except ApiError:
            return LabelSelector.nothing()

    # ---- reconcile ---------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        ds = self.dsets.get(key)
        if ds is None:
            self.expect.forget(key)
            return
        if is_terminating(ds):
            return
        ns = meta(ds).get("namespace")
        selector = self.selector(ds)
        pods = await self.refs.claim(ds, self.pods.list(namespace=ns), selector,
                                     can_adopt=is_pod_active)
        revisions = await self.history.claim(ds, self.revisions.list(namespace=ns), selector)
        collisions = int((ds.get("status") or {}).get("collisionCount") or 0)
        current, revisions, collisions = await self.history.ensure(ds, revisions, collisions)
        rev_hash = (meta(current).get("labels") or {}).get(HASH_LABEL, "")
        node_pods = self._by_node(pods)
        nodes = {meta(n)["name"]: n for n in self.nodes.list()}
        verdicts = {name: dl.should_run(ds, n) for name, n in nodes.items()}
        adds, dels = self.expect.pending(key, {meta(p)["name"]: p for p in pods})
        acted = False
        if not adds and not dels:
            acted = await self._manage(key, ds, node_pods, nodes, verdicts, rev_hash)
            strategy = ((ds.get("spec") or {}).get("updateStrategy") or {}).get("type")
            if not acted and strategy in (None, "RollingUpdate"):
                runnable = {n for n, (run, _) in verdicts.items() if run}
                delete, create = dl.rolling_update(ds, node_pods, runnable,
                                                   revision_hash=rev_hash, now=self.clock.now())
                await self._sync(key, ds, create, self._pods_named(pods, delete), rev_hash)
        live = {(meta(p).get("labels") or {}).get(POD_REVISION_LABEL) for p in pods}
        live_names = {meta(r)["name"] for r in revisions
                      if (meta(r).get("labels") or {}).get(HASH_LABEL) in live}
        live_names.add(meta(current)["name"])
        await self.history.truncate(ds, revisions, live_names,
                                    (ds.get("spec") or {}).get("revisionHistoryLimit"))
        await self._write_status(ds, node_pods, verdicts, rev_hash, collisions)

    @staticmethod
    def _by_node(pods: list[Obj]) -> dict[str, list[Obj]]:
        out: dict[str, list[Obj]] = {}
        for pod in pods:
            node = dl.node_of_pod(pod)
            if node is not None:
                out.setdefault(node, []).append(pod)
        return out

    @staticmethod
    def _pods_named(pods: list[Obj], names: list[str]) -> list[Obj]:
        wanted = set(names)
        return [p for p in pods if meta(p)["name"] in wanted]

    async def _manage(self, key: str, ds: Obj, node_pods: dict[str, list[Obj]],
                      nodes: dict[str, Obj], verdicts: dict[str, tuple[bool, bool]],
                      rev_hash: str) -> bool:
        """Create and delete pods so each node has what it should; True if anything moved."""
        surge = dl.surge_and_unavailable(ds, 1)[0] > 0 and ((ds.get("spec") or {}).get(
            "updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"
        create: list[str] = []
        delete: list[Obj] = []
        for name, (run, keep) in sorted(verdicts.items()):
            pods = node_pods.get(name, [])
            plan = dl.plan_node(pods, run=run, keep=keep, surge=surge, revision_hash=rev_hash)
            if plan.create:
                create.append(name)
            failed = self._pods_named(pods, plan.failed)
            if failed and not self._may_kill_failed(f"{key}/{name}"):
                plan.delete = [n for n in plan.delete if n not in plan.failed]
                failed = []
            for pod in failed:
                await self.recorder.record(ds, "Warning", "FailedDaemonPod",
                                           f"Found failed daemon pod {object_key(pod)} on node "
                                           f"{name}, will try to kill it")
            delete += self._pods_named(pods, plan.delete)
        for name, pods in node_pods.items():   # pinned to a node that is gone, never bound
            if name not in nodes:
                delete += [p for p in pods if not (p.get("spec") or {}).get("nodeName")
                           and not is_terminating(p)]
        await self._sync(key, ds, create, delete, rev_hash)
        return bool(create or delete)

    def _may_kill_failed(self, key: str) -> bool:
        """Failed daemon pods on one node are replaced with back-off (1 s doubling to 15 min,
        as failedPodsBackoff), so a pod that fails at once does not spin; requeues if not."""
        now = self.clock.monotonic()
        delay, until = self._backoff.get(key, (0.0, 0.0))
        if until > now:
            self.queue.add_after(key.rsplit("/", 1)[0], until - now + 0.01)
            return False
        delay = min(max(delay * 2, 1.0), 900.0)
        self._backoff[key] = (delay, now + delay)
        return True

    async def _sync(self, key: str, ds: Obj, create: list[str], delete: list[Obj],
                    rev_hash: str) -> None:
        for node in create[:_BURST]:
            await self.podcontrol.create(key, ds, dl.pod_for_node(ds, node, rev_hash))
        await self.podcontrol.delete(key, ds, delete)

    async def _write_status(self, ds: Obj, node_pods: dict[str, list[Obj]],
                            verdicts: dict[str, tuple[bool, bool]], rev_hash: str,
                            collisions: int) -> None:
        now = self.clock.now()
        active = {n: [p for p in pods if not is_terminating(p)] for n, pods in node_pods.items()}
        new = dl.daemon_status(ds, active, {n: run for n, (run, _) in verdicts.items()},
                               revision_hash=rev_hash, now=now)
        new["observedGeneration"] = meta(ds).get("generation", 1)
        if collisions:
            new["collisionCount"] = collisions
        status = dict(ds.get("status") or {})
        if any(status.get(k) != v for k, v in new.items()):
            status.update(new)
            body = deep(ds)
            body["status"] = status
            try:
                await self.client.update("daemonsets", body, subresource="status")
            except NotFound:
                return
        min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
        if min_ready > 0:
            waits = [w for pods in active.values() for p in pods
                     if (w := available_in(p, min_ready, now))]
            if waits:
                raise Requeue(min(waits) + 0.01)
