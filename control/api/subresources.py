"""The `scale` and `binding` subresources.

Scale is a view (autoscaling/v1 `Scale`) of a workload's `spec.replicas`, `status.replicas`
and selector (as a string) — for a custom kind, of the paths its CRD names; writing it writes the workload's `spec.replicas`, bumping its
generation like any spec change. Binding sets a pending pod's `spec.nodeName` (409 if it is
already bound) and marks it `PodScheduled`.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from control.api import meta, versions
from control.api.meta import Obj
from control.errors import BadRequest, Cause, Conflict, Invalid, NotFound
from control.models.resources import ResourceInfo
from control.models.selectors import selector_from_labels, selector_from_spec
from control.store.base import KV

if TYPE_CHECKING:
    from control.api.objects import ObjectService, Written

SCALABLE = ("deployments", "replicasets", "replicationcontrollers", "statefulsets")
_RETRIES = 8


def _check_scalable(info: ResourceInfo) -> None:
    if info.plural not in SCALABLE and info.scale_paths is None:
        raise NotFound(f"{info.plural} have no scale subresource; scalable resources are "
                       + ", ".join(SCALABLE))


def _at(obj: Any, path: str) -> Any:
    """The value at a CRD scale path like `.spec.replicas` (None when absent)."""
    for part in path.lstrip(".").split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def _set_at(obj: Obj, path: str, value: Any) -> None:
    *parents, last = path.lstrip(".").split(".")
    for part in parents:
        obj = obj.setdefault(part, {})
    obj[last] = value


def scale_of(info: ResourceInfo, obj: Obj) -> Obj:
    _check_scalable(info)
    md, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    scale_md = {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                   "creationTimestamp") if k in md}
    if info.scale_paths is not None:       # a custom kind: the CRD's paths (kube's scale.go)
        spec_path, status_path, selector_path = info.scale_paths
        out: Obj = {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": scale_md,
                    "spec": {"replicas": int(_at(obj, spec_path) or 0)},
                    "status": {"replicas": int(_at(obj, status_path) or 0)}}
        selector = _at(obj, selector_path) if selector_path else None
        if selector:
            out["status"]["selector"] = str(selector)
        return out
    if info.plural == "replicationcontrollers":
        selector = str(selector_from_labels(spec.get("selector") or {}))
    else:
        selector = str(selector_from_spec(spec.get("selector") or {}))
    return {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": scale_md,
            "spec": {"replicas": int(spec.get("replicas", 1))},
            "status": {"replicas": int(status.get("replicas") or 0), "selector": selector}}


def _replicas(scale: Any) -> int:
    if not isinstance(scale, dict):
        raise BadRequest("a Scale body must be a JSON object")
    value = (scale.get("spec") or {}).get("replicas", 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise Invalid(f"Scale is invalid: spec.replicas: Invalid value: {value!r}: must be "
                      "greater than or equal to 0", kind="Scale",
                      causes=[Cause("spec.replicas", f"Invalid value: {value!r}: must be "
                                    "greater than or equal to 0")])
    return value


async def _write_replicas(svc: ObjectService, info: ResourceInfo, kv: KV, current: Obj,
                          replicas: int, dry_run: bool) -> Written:
    new = copy.deepcopy(current)
    _set_at(new, info.scale_paths[0] if info.scale_paths else ".spec.replicas", replicas)
    written = await svc.write_update(info, kv, current, new, subresource=None, dry_run=dry_run)
    written.object = scale_of(info, written.object)
    return written


async def update_scale(svc: ObjectService, info: ResourceInfo, name: str, scale: Obj, *,
                       namespace: str | None, dry_run: bool) -> Written:
    _check_scalable(info)
    replicas = _replicas(scale)
    rv = (scale.get("metadata") or {}).get("resourceVersion")
    for _ in range(_RETRIES):
        kv = await svc.get_kv(info, name, namespace)
        if rv and rv != str(kv.mod_revision):
            raise meta.conflict(info, name)
        try:
            return await _write_replicas(svc, info, kv, meta.decode(kv), replicas, dry_run)
        except Conflict:
            if rv:
                raise
    raise meta.conflict(info, name)


async def patch_scale(svc: ObjectService, info: ResourceInfo, kv: KV, current: Obj, body: Any,
                      *, patch_type: str, dry_run: bool) -> Written:
    scale = versions.apply_patch(patch_type, scale_of(info, current), body)
    rv = (scale.get("metadata") or {}).get("resourceVersion")
    if rv and rv != str(kv.mod_revision):
        raise meta.conflict(info, current["metadata"]["name"])
    return await _write_replicas(svc, info, kv, current, _replicas(scale), dry_run)


async def bind(svc: ObjectService, name: str, binding: Obj, *, namespace: str) -> Obj:
    if not isinstance(binding, dict):
        raise BadRequest("a Binding body must be a JSON object")
    target = binding.get("target") or {}
    node = target.get("name")
    if not node:
        raise Invalid(f'Binding "{name}" is invalid: target.name: Required value',
                      kind="Binding", name=name,
                      causes=[Cause("target.name", "Required value", "FieldValueRequired")])
    info = meta.resource("pods")
    for _ in range(_RETRIES):
        kv = await svc.get_kv(info, name, namespace)
        pod = meta.decode(kv)
        md = pod["metadata"]
        if md.get("deletionTimestamp"):
            raise Conflict(f'pod {name} is being deleted, cannot be assigned to a host',
                           kind="pods", name=name)
        current = (pod.get("spec") or {}).get("nodeName")
        if current:
            raise Conflict(f'pod {name} is already assigned to node "{current}"',
                           kind="pods", name=name)
        pod.setdefault("spec", {})["nodeName"] = node
        _scheduled(pod, svc.now)
        try:
            out = await svc.store.update(kv.key, meta.encode(pod),
                                         expected_revision=kv.mod_revision)
        except Conflict:
            continue
        md["resourceVersion"] = str(out.mod_revision)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "code": 201}
    raise meta.conflict(info, name)


def _scheduled(pod: Obj, now: meta.Now) -> None:
    conditions = pod.setdefault("status", {}).setdefault("conditions", [])
    conditions[:] = [c for c in conditions if c.get("type") != "PodScheduled"]
    conditions.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                       "lastTransitionTime": meta.rfc3339(now())})
