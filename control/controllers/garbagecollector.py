"""Garbage collector: ownerReferences made true.

- a dependent none of whose owners exists any more (checked by uid, and confirmed with a live
  GET before deleting, so a cache lag never kills a fresh object) is deleted in the
  background; a dependent with some owners gone just loses the dangling references;
- an owner being deleted with the `foregroundDeletion` finalizer gets its dependents deleted
  (foreground too), and the finalizer removed once none is left, which completes the delete;
- an owner with the `orphan` finalizer gets its dependents' references to it removed, then
  the finalizer.

Keys are `resource|namespace/name`. A uid index over the watched resources answers "does this
owner exist" and "who depends on it".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from control.clientbase import Client, Obj
from control.clock import Clock
from control.controllers.base import Controller, Requeue
from control.controllers.util import is_terminating, meta
from control.errors import NotFound
from control.informer import Informer, object_key
from control.models.resources import ResourceInfo, by_kind

__all__ = ["FOREGROUND", "GC_RESOURCES", "ORPHAN", "GarbageCollector"]

FOREGROUND, ORPHAN = "foregroundDeletion", "orphan"
UNWATCHED_RECHECK = 2.0     # seconds between checks of owners of unwatched kinds
GC_RESOURCES = ("pods", "replicasets", "deployments", "replicationcontrollers", "services",
                "endpointslices", "configmaps", "secrets", "jobs", "cronjobs", "daemonsets",
                "statefulsets", "controllerrevisions", "leases", "nodes",
                "persistentvolumeclaims")


class GarbageCollector(Controller):
    name = "garbagecollector"

    def __init__(self, client: Client, *, clock: Clock, informers: dict[str, Informer],
                 workers: int = 2,
                 kinds: Callable[[str, str | None], ResourceInfo] = by_kind) -> None:
        super().__init__(client, clock=clock, workers=workers)
        self.kinds = kinds          # the server's registry: owners may be CRD kinds
        self.informers = informers
        self._by_uid: dict[str, tuple[str, str]] = {}
        self._dependents: dict[str, set[tuple[str, str]]] = {}
        for resource, inf in informers.items():
            inf.add_handler(_Handler(self, resource))

    # ---- the index ---------------------------------------------------------------------------

    def _seen(self, resource: str, obj: Obj, old: Obj | None = None) -> None:
        key = (resource, object_key(obj))
        uid = meta(obj).get("uid")
        if uid:
            self._by_uid[uid] = key
        if old is not None:
            for ref in meta(old).get("ownerReferences") or []:
                self._dependents.get(ref.get("uid", ""), set()).discard(key)
        for ref in meta(obj).get("ownerReferences") or []:
            self._dependents.setdefault(ref.get("uid", ""), set()).add(key)
        fins = set(meta(obj).get("finalizers") or [])
        if meta(obj).get("ownerReferences") or (is_terminating(obj) and fins & {FOREGROUND, ORPHAN}):
            self.enqueue(f"{resource}|{key[1]}")

    def _gone(self, resource: str, obj: Obj) -> None:
        key = (resource, object_key(obj))
        uid = meta(obj).get("uid", "")
        if self._by_uid.get(uid) == key:
            del self._by_uid[uid]
        for r, k in self._dependents.pop(uid, set()):
            self.enqueue(f"{r}|{k}")
        for ref in meta(obj).get("ownerReferences") or []:
            deps = self._dependents.get(ref.get("uid", ""))
            if deps is not None:
                deps.discard(key)
            owner = self._by_uid.get(ref.get("uid", ""))
            if owner is not None:
                self.enqueue(f"{owner[0]}|{owner[1]}")

    def dependents(self, uid: str) -> list[tuple[str, Obj]]:
        out = []
        for resource, key in sorted(self._dependents.get(uid, set())):
            obj = self.informers[resource].get(key)
            if obj is not None and any(r.get("uid") == uid
                                       for r in meta(obj).get("ownerReferences") or []):
                out.append((resource, obj))
        return out

    # ---- reconcile ---------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        resource, _, okey = key.partition("|")
        inf = self.informers.get(resource)
        obj = inf.get(okey) if inf is not None else None
        if obj is None:
            return
        fins = meta(obj).get("finalizers") or []
        if is_terminating(obj) and ORPHAN in fins:
            await self._orphan(resource, obj)
        elif is_terminating(obj) and FOREGROUND in fins:
            await self._foreground(resource, obj)
        if meta(obj).get("ownerReferences"):
            await self._check_owners(resource, obj)

    async def _owner_exists(self, ref: dict[str, Any], namespace: str | None) -> bool:
        uid = ref.get("uid", "")
        if uid in self._by_uid:
            return True
        try:
            info = self.kinds(ref.get("kind", ""), ref.get("apiVersion"))
        except KeyError:
            return True                      # a kind we do not serve: leave it alone
        try:
            owner = await self.client.get(info.plural, ref.get("name", ""),
                                          namespace=namespace if info.namespaced else None)
        except NotFound:
            return False
        return bool(meta(owner).get("uid") == uid)

    async def _check_owners(self, resource: str, obj: Obj) -> None:
        m = meta(obj)
        refs = m.get("ownerReferences") or []
        alive = [r for r in refs if await self._owner_exists(r, m.get("namespace"))]
        if len(alive) == len(refs):
            if any(r.get("uid") not in self._by_uid for r in refs):
                # an owner no informer here watches (a custom object): no event will say it
                # went, so look again later
                raise Requeue(UNWATCHED_RECHECK)
            return
        if not alive:
            if is_terminating(obj):
                return
            self.log.info("%s/%s: all owners gone; deleting %s", m.get("namespace", ""),
                          m.get("name"), resource)
            try:
                await self.client.delete(resource, m["name"], namespace=m.get("namespace"),
                                         propagation="Background", preconditions_uid=m.get("uid"))
            except NotFound:
                pass
            return
        await self._patch(resource, obj, {"metadata": {
            "ownerReferences": alive, "resourceVersion": m.get("resourceVersion")}})

    async def _foreground(self, resource: str, obj: Obj) -> None:
        deps = self.dependents(meta(obj).get("uid", ""))
        for dep_resource, dep in deps:
            if not is_terminating(dep):
                dm = meta(dep)
                try:
                    await self.client.delete(dep_resource, dm["name"],
                                             namespace=dm.get("namespace"),
                                             propagation="Foreground")
                except NotFound:
                    pass
        if deps:
            raise Requeue(1.0)               # dependents' deletions re-enqueue us sooner
        await self._drop_finalizer(resource, obj, FOREGROUND)

    async def _orphan(self, resource: str, obj: Obj) -> None:
        uid = meta(obj).get("uid", "")
        for dep_resource, dep in self.dependents(uid):
            refs = [r for r in meta(dep).get("ownerReferences") or [] if r.get("uid") != uid]
            await self._patch(dep_resource, dep, {"metadata": {
                "ownerReferences": refs, "resourceVersion": meta(dep).get("resourceVersion")}})
        await self._drop_finalizer(resource, obj, ORPHAN)

    async def _drop_finalizer(self, resource: str, obj: Obj, finalizer: str) -> None:
        m = meta(obj)
        rest = [f for f in m.get("finalizers") or [] if f != finalizer]
        await self._patch(resource, obj, {"metadata": {
            "finalizers": rest or None, "resourceVersion": m.get("resourceVersion")}})
        self.log.info("%s/%s: %s finalizer removed", m.get("namespace", ""), m.get("name"),
                      finalizer)

    async def _patch(self, resource: str, obj: Obj, patch: Obj) -> None:
        m = meta(obj)
        try:
            await self.client.patch(resource, m["name"], patch, namespace=m.get("namespace"))
        except NotFound:
            pass


class _Handler:
    """Feeds one resource's informer events into the collector's index."""

    def __init__(self, gc: GarbageCollector, resource: str) -> None:
        self.gc, self.resource = gc, resource

    def on_add(self, obj: Obj) -> None:
        self.gc._seen(self.resource, obj)

    def on_update(self, old: Obj, new: Obj) -> None:
        self.gc._seen(self.resource, new, old)

    def on_delete(self, obj: Obj) -> None:
        self.gc._gone(self.resource, obj)
