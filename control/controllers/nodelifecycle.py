"""Node lifecycle: a node whose kubelet stops renewing its Lease (kube-node-lease/<node>) for
`grace` seconds (default 40, as Kubernetes' node-monitor-grace-period) becomes Ready=Unknown
with the `node.kubernetes.io/unreachable` taints (NoSchedule, NoExecute); once the NoExecute
taint is `eviction_grace` seconds old its pods are force-deleted so their controllers
replace them on healthy nodes. A renewed Lease removes the taints (the kubelet itself posts
Ready=True again).

Difference from Kubernetes, on purpose: Kubernetes gives every pod a default toleration of
300 s for the unreachable taint before evicting it (the admission step adds it, and knet's
does too, so pods look the same); knet treats that default toleration (exactly 300 s) as
`eviction_grace` (default 5 s, configurable) so that labs see failover quickly. Any other
toleration of the taint (forever, or another tolerationSeconds) is honoured as written.

Pods bound to a node that no longer exists (deleted Node) are force-deleted once they have
been seen orphaned for `eviction_grace` seconds and a live GET confirms the node is gone, like
Kubernetes' pod garbage collector, so their controllers replace them.

Staleness is measured on this process's monotonic clock from the moment a new renewTime was
observed (like Kubernetes' probe timestamps), so clock skew between nodes does not matter.
"""

from __future__ import annotations

import asyncio
from typing import Any

from control.clientbase import Client, Obj
from control.clock import Clock, parse_rfc3339, rfc3339
from control.controllers.base import Controller, Requeue
from control.controllers.events import EventRecorder
from control.controllers.util import deep, meta
from control.errors import NotFound
from control.informer import Informer, object_key

__all__ = ["NETWORK_UNAVAILABLE", "UNREACHABLE", "NodeLifecycleController", "tolerates"]

UNREACHABLE = "node.kubernetes.io/unreachable"
# TaintNodesByCondition: a node whose NetworkUnavailable condition is True takes no new pods
NETWORK_UNAVAILABLE = "node.kubernetes.io/network-unavailable"
DEFAULT_TOLERATION_SECONDS = 300.0
LEASE_NS = "kube-node-lease"
ORPHANS = "@orphaned-pods"      # the queue key of the orphaned-pod sweep (not a node name)


def tolerates(pod: Obj, taint: dict[str, Any]) -> tuple[bool, float | None]:
    """(tolerated, tolerationSeconds or None for forever) of one taint by a pod."""
    for t in (pod.get("spec") or {}).get("tolerations") or []:
        op = t.get("operator") or "Equal"
        key_ok = (not t.get("key") and op == "Exists") or t.get("key") == taint.get("key")
        val_ok = op == "Exists" or (t.get("value") or "") == (taint.get("value") or "")
        eff_ok = not t.get("effect") or t.get("effect") == taint.get("effect")
        if key_ok and val_ok and eff_ok:
            secs = t.get("tolerationSeconds")
            return True, None if secs is None else float(secs)
    return False, None


class NodeLifecycleController(Controller):
    name = "nodelifecycle"

    def __init__(self, client: Client, *, clock: Clock, recorder: EventRecorder,
                 nodes: Informer, leases: Informer, pods: Informer, grace: float = 40.0,
                 eviction_grace: float = 5.0, period: float = 1.0) -> None:
        super().__init__(client, clock=clock, workers=1)
        self.recorder = recorder
        self.nodes, self.leases, self.pods = nodes, leases, pods
        self.grace, self.eviction_grace, self.period = grace, eviction_grace, period
        self._probe: dict[str, tuple[str, float]] = {}
        self._orphaned_since: dict[str, float] = {}      # pod uid -> monotonic first seen
        nodes.add_handler(on_add=lambda n: self.enqueue(object_key(n)),
                          on_update=lambda _o, n: self.enqueue(object_key(n)))
        leases.add_handler(on_update=lambda o, n: self._lease(n), on_add=self._lease)

    def _lease(self, lease: Obj) -> None:
        if meta(lease).get("namespace") == LEASE_NS:
            self.enqueue(meta(lease)["name"])

    async def run(self, stop: asyncio.Event) -> None:
        monitor = asyncio.create_task(self._monitor(stop), name="nodelifecycle-monitor")
        try:
            await super().run(stop)
        finally:
            monitor.cancel()
            await asyncio.gather(monitor, return_exceptions=True)

    async def _monitor(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for key in self.nodes.keys():  # noqa: SIM118 - Informer.keys(), not a dict
                self.enqueue(key)
            self.enqueue(ORPHANS)
            await self.clock.sleep(self.period)

    def _renew_time(self, node: Obj) -> str:
        lease = self.leases.get(f"{LEASE_NS}/{meta(node)['name']}")
        if lease is not None:
            return str((lease.get("spec") or {}).get("renewTime") or "")
        ready = _ready_condition(node) or {}
        return str(ready.get("lastHeartbeatTime") or "")

    async def reconcile(self, key: str) -> None:
        if key == ORPHANS:
            await self._sweep_orphans()
            return
        node = self.nodes.get(key)
        if node is None:
            self._probe.pop(key, None)
            return
        renew, now = self._renew_time(node), self.clock.monotonic()
        seen = self._probe.get(key)
        if seen is None or seen[0] != renew:
            seen = self._probe[key] = (renew, now)
        taints = (node.get("spec") or {}).get("taints") or []
        net_down = any(c.get("type") == "NetworkUnavailable" and c.get("status") == "True"
                       for c in (node.get("status") or {}).get("conditions") or [])
        if net_down != any(t.get("key") == NETWORK_UNAVAILABLE for t in taints):
            keep = [t for t in taints if t.get("key") != NETWORK_UNAVAILABLE]
            await self._set_taints(node, keep + ([{"key": NETWORK_UNAVAILABLE,
                                                   "effect": "NoSchedule"}] if net_down else []))
            return                                # the node update re-enqueues it
        tainted = [t for t in taints if t.get("key") == UNREACHABLE]
        if now - seen[1] <= self.grace:
            if tainted:
                await self._set_taints(node, [t for t in taints if t.get("key") != UNREACHABLE])
                self.log.info("%s: lease renewed; unreachable taints removed", key)
            return
        if not tainted or (_ready_condition(node) or {}).get("status") != "Unknown":
            await self._mark_unreachable(node, tainted)
            return                                # the node update re-enqueues... and so
        await self._evict(node, tainted)          # does the monitor loop

    async def _mark_unreachable(self, node: Obj, tainted: list[Obj]) -> None:
        name = meta(node)["name"]
        now = rfc3339(self.clock.now())
        body = deep(node)
        conds = (body.setdefault("status", {})).setdefault("conditions", [])
        if not any(c.get("type") == "Ready" for c in conds):
            conds.append({"type": "Ready"})
        for c in conds:
            if c.get("status") != "Unknown":
                c.update(status="Unknown", reason="NodeStatusUnknown",
                         message="Kubelet stopped posting node status.",
                         lastTransitionTime=now)
        try:
            node = await self.client.update("nodes", body, subresource="status")
        except NotFound:
            return
        if not tainted:
            taints = list((node.get("spec") or {}).get("taints") or [])
            taints += [{"key": UNREACHABLE, "effect": "NoSchedule", "timeAdded": now},
                       {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": now}]
            await self._set_taints(node, taints)
        await self.recorder.record(node, "Normal", "NodeNotReady",
                                   f"Node {name} status is now: NodeNotReady")
        self.log.warning("%s: lease not renewed for %.0fs; marked NotReady (unreachable)",
                         name, self.grace)

    async def _set_taints(self, node: Obj, taints: list[Obj]) -> None:
        try:
            await self.client.patch("nodes", meta(node)["name"], {
                "spec": {"taints": taints or None},
                "metadata": {"resourceVersion": meta(node).get("resourceVersion")}})
        except NotFound:
            pass

    async def _evict(self, node: Obj, tainted: list[Obj]) -> None:
        name = meta(node)["name"]
        taint = next((t for t in tainted if t.get("effect") == "NoExecute"), tainted[0])
        added = parse_rfc3339(taint.get("timeAdded")) or self.clock.now()
        elapsed = (self.clock.now() - added).total_seconds()
        wait: list[float] = []
        for pod in self.pods.list():
            if (pod.get("spec") or {}).get("nodeName") != name:
                continue
            ok, secs = tolerates(pod, taint)
            if ok and secs == DEFAULT_TOLERATION_SECONDS:
                ok, secs = False, None            # Kubernetes' default: knet's eviction grace
            limit = None if ok and secs is None else (secs if ok else self.eviction_grace)
            if limit is None:
                continue
            if elapsed < limit:
                wait.append(limit - elapsed)
                continue
            await self._delete_pod(pod, name)
        if wait:
            raise Requeue(min(wait))

    async def _sweep_orphans(self) -> None:
        now = self.clock.monotonic()
        seen: dict[str, float] = {}
        for pod in self.pods.list():
            node = (pod.get("spec") or {}).get("nodeName")
            uid = meta(pod).get("uid", "")
            if not node or self.nodes.get(node) is not None:
                continue
            seen[uid] = self._orphaned_since.get(uid, now)
            if now - seen[uid] < self.eviction_grace:
                continue
            try:
                await self.client.get("nodes", node)
                continue                        # the cache was behind: the node exists
            except NotFound:
                pass
            await self._delete_pod(pod, node, reason="its node no longer exists")
        self._orphaned_since = seen

    async def _delete_pod(self, pod: Obj, node: str, *,
                          reason: str = "node unreachable") -> None:
        pm = meta(pod)
        try:
            await self.client.delete("pods", pm["name"], namespace=pm["namespace"],
                                     grace_period=0, preconditions_uid=pm.get("uid"))
        except NotFound:
            return
        if reason == "node unreachable":
            await self.recorder.record(
                pod, "Normal", "TaintManagerEviction",
                f"Marking for deletion Pod {pm['namespace']}/{pm['name']}")
        self.log.info("%s: deleted pod %s/%s (%s)", node, pm["namespace"], pm["name"], reason)


def _ready_condition(node: Obj) -> dict[str, Any] | None:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return dict(c)
    return None
