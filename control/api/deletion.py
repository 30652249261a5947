"""Deletion semantics of the object layer, as Kubernetes has them:

- an object without finalizers and without a grace period is removed from the store at once;
- `propagationPolicy` Foreground / Orphan add the `foregroundDeletion` / `orphan` finalizer,
  which the garbage collector (control/controllers) honours and removes; Background removes
  the owner now and leaves its dependents to the garbage collector;
- with finalizers, deletion only sets `deletionTimestamp` (+ `deletionGracePeriodSeconds: 0`);
  the update that empties `metadata.finalizers` removes the object;
- a pod bound to a node is deleted gracefully: `deletionTimestamp = now + grace` and
  `deletionGracePeriodSeconds = grace`; its kubelet finishes with a grace-0 delete. Unbound or
  finished pods, and `gracePeriodSeconds=0`, go at once;
- a namespace turns `Terminating`; this module deletes everything in it (the same calls a
  user would make) and removes the namespace as soon as it is empty. A restart resumes;
- a dry run (`dryRun=All`, in the query or the DeleteOptions body) answers what the delete
  would return and writes nothing, cascades included.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from control.api import meta
from control.api.meta import Obj
from control.errors import BadRequest, Conflict, Forbidden, NotFound
from control.models.resources import ResourceInfo
from control.store.base import KV

if TYPE_CHECKING:
    from control.api.objects import ObjectService

log = logging.getLogger(__name__)

FOREGROUND, ORPHAN = "foregroundDeletion", "orphan"
_NS_FINALIZER = "kubernetes"
_RETRIES = 8


async def delete(svc: ObjectService, info: ResourceInfo, name: str, *, namespace: str | None,
                 propagation: str | None, grace_period: int | None,
                 preconditions_uid: str | None, preconditions_rv: str | None,
                 dry_run: bool) -> Obj:
    if propagation not in (None, "", "Background", "Foreground", "Orphan"):
        raise BadRequest(f"propagationPolicy {propagation!r} is not valid; use "
                              "Background, Foreground or Orphan")
    for _ in range(_RETRIES):
        kv = await svc.get_kv(info, name, namespace)
        obj = meta.decode(kv)
        md = obj["metadata"]
        if preconditions_uid and md.get("uid") != preconditions_uid:
            raise Conflict(f'Precondition failed: UID in precondition: {preconditions_uid}, '
                           f'UID in object meta: {md.get("uid")}', kind=info.plural, name=name)
        if preconditions_rv and md.get("resourceVersion") != preconditions_rv:
            raise Conflict(f"Precondition failed: ResourceVersion in precondition: "
                           f"{preconditions_rv}, ResourceVersion in object meta: "
                           f"{md.get('resourceVersion')}", kind=info.plural, name=name)
        try:
            if info.plural == "namespaces":
                return await _delete_namespace(svc, kv, obj, dry_run=dry_run)
            return await _delete_one(svc, info, kv, obj, propagation, grace_period,
                                     dry_run=dry_run)
        except Conflict:
            continue
    raise meta.conflict(info, name)


async def _delete_one(svc: ObjectService, info: ResourceInfo, kv: KV, obj: Obj,
                      propagation: str | None, grace_period: int | None, *,
                      dry_run: bool) -> Obj:
    """Remove obj now, or mark it (deletionTimestamp, finalizers). A dry run answers the
    same object and writes nothing."""
    step = _mark(svc, info, obj, propagation, grace_period)
    if dry_run or step == _GOING:
        return obj
    if step == _REMOVE:
        return await remove(svc, info, kv, obj)
    md = obj["metadata"]
    out = await svc.store.update(kv.key, meta.encode(obj), expected_revision=kv.mod_revision)
    md["resourceVersion"] = str(out.mod_revision)
    log.info("%s/%s: marked for deletion (grace %ss, finalizers %s)", info.plural,
             md["name"], md["deletionGracePeriodSeconds"], md.get("finalizers"))
    return obj


_REMOVE, _GOING, _MARKED = "remove", "going", "marked"


def _mark(svc: ObjectService, info: ResourceInfo, obj: Obj, propagation: str | None,
          grace_period: int | None) -> str:
    """What a delete does to obj, in memory: _REMOVE (nothing holds it), _GOING (already
    being deleted, no sooner) or _MARKED (deletionTimestamp, grace and finalizers set)."""
    md = obj["metadata"]
    grace = _grace(info, obj, grace_period)
    finalizers = list(md.get("finalizers") or [])
    if not md.get("deletionTimestamp"):
        if propagation == "Foreground" and FOREGROUND not in finalizers:
            finalizers.append(FOREGROUND)
        elif propagation == "Orphan" and ORPHAN not in finalizers:
            finalizers.append(ORPHAN)
    if not finalizers and grace == 0:
        return _REMOVE
    old_grace = md.get("deletionGracePeriodSeconds")
    if md.get("deletionTimestamp") and old_grace is not None and grace >= old_grace:
        return _GOING
    md["deletionTimestamp"] = meta.rfc3339(svc.now(), plus=grace)
    md["deletionGracePeriodSeconds"] = grace
    md["generation"] = int(md.get("generation") or 1) + 1
    if finalizers:
        md["finalizers"] = finalizers
    return _MARKED


def _grace(info: ResourceInfo, obj: Obj, grace_period: int | None) -> int:
    if info.plural != "pods":
        return 0
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
        return 0
    if grace_period is not None:
        return max(0, int(grace_period))
    default = spec.get("terminationGracePeriodSeconds")
    return 30 if default is None else max(0, int(default))


def should_finish(info: ResourceInfo, old: Obj, new: Obj) -> bool:
    """An update that empties the finalizers of an object being deleted removes it."""
    md, old_md = new["metadata"], old["metadata"]
    if not old_md.get("deletionTimestamp") or md.get("finalizers"):
        return False
    if info.plural == "namespaces":
        return not (new.get("spec") or {}).get("finalizers")
    return old_md.get("deletionGracePeriodSeconds") in (None, 0)


async def remove(svc: ObjectService, info: ResourceInfo, kv: KV, obj: Obj) -> Obj:
    """Delete from the store (compare-and-swap on kv), free what the object held, and finish
    its namespace if that was the last thing in it."""
    try:
        out = await svc.store.delete(kv.key, expected_revision=kv.mod_revision)
    except NotFound:
        raise meta.not_found(info, obj["metadata"]["name"]) from None
    except Conflict:
        raise meta.conflict(info, obj["metadata"]["name"]) from None
    obj["metadata"]["resourceVersion"] = str(out.mod_revision)
    if info.plural == "services":
        svc.services.release(obj)
    if info.plural == "namespaces":
        svc.namespaces.gone(obj["metadata"]["name"])
    ns = obj["metadata"].get("namespace")
    if ns and svc.namespaces.is_terminating(ns):
        await finish_namespace(svc, ns)
    return obj


async def _delete_namespace(svc: ObjectService, kv: KV, obj: Obj, *, dry_run: bool) -> Obj:
    md, name = obj["metadata"], obj["metadata"]["name"]
    if name in ("default", "kube-system", "kube-public"):
        raise Forbidden(f'namespaces "{name}" is forbidden: this namespace may not be '
                             "deleted", kind="namespaces", name=name)
    if not md.get("deletionTimestamp"):
        md["deletionTimestamp"] = meta.rfc3339(svc.now())
        md["deletionGracePeriodSeconds"] = 0
        obj["status"] = {**(obj.get("status") or {}), "phase": "Terminating"}
        if dry_run:
            return obj
        out = await svc.store.update(kv.key, meta.encode(obj), expected_revision=kv.mod_revision)
        md["resourceVersion"] = str(out.mod_revision)
        log.info("namespaces/%s: terminating", name)
    elif dry_run:
        return obj
    svc.namespaces.terminating(name)
    await drain_namespace(svc, name)
    try:
        return await svc.get("namespaces", name)
    except NotFound:
        return obj


async def drain_namespace(svc: ObjectService, namespace: str) -> None:
    """Delete every object in a terminating namespace, then finish it if nothing is left."""
    for info in svc.namespaced_resources():
        kvs, _ = await svc.store.list(info.prefix(namespace))
        for kv in kvs:
            name = meta.decode(kv)["metadata"]["name"]
            try:
                await delete(svc, info, name, namespace=namespace, propagation="Background",
                             grace_period=None, preconditions_uid=None,
                             preconditions_rv=None, dry_run=False)
            except NotFound:
                pass
    await finish_namespace(svc, namespace)


async def finish_namespace(svc: ObjectService, namespace: str) -> None:
    for info in svc.namespaced_resources():
        kvs, _ = await svc.store.list(info.prefix(namespace), limit=1)
        if kvs:
            return
    key = f"/registry/namespaces/{namespace}"
    for _ in range(_RETRIES):
        kv = await svc.store.get(key)
        if kv is None:
            svc.namespaces.gone(namespace)
            return
        obj = meta.decode(kv)
        if obj["metadata"].get("finalizers"):
            return                                   # someone else's finalizer still holds it
        try:
            await svc.store.delete(key, expected_revision=kv.mod_revision)
        except (Conflict, NotFound):
            continue
        svc.namespaces.gone(namespace)
        log.info("namespaces/%s: empty, removed", namespace)
        return
