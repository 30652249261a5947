"""The `pods/ephemeralcontainers` subresource, as kube-apiserver serves it to `kubectl debug`.

GET returns the Pod; PATCH (strategic, merge or JSON, applied to the whole Pod) and PUT (a
Pod) may change nothing but `spec.ephemeralContainers`: the rest of the body is ignored, as
the kube-apiserver's strategy copies every other field from the stored pod. An ephemeral
container is validated as kube-apiserver does (validateEphemeralContainers and
ValidatePodEphemeralContainersUpdate): a unique name across all the pod's containers, an
existing non-ephemeral `targetContainerName`, none of the fields on the deny list (ports,
probes, lifecycle, resources, resizePolicy, restartPolicy) nor a volumeMount subPath, and the
ones already added may neither change nor go. A missing pod is the usual 404 whose Status
names the pod (`details.name`), which kubectl reads to tell it from a server without the
subresource.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from control.api import meta, versions
from control.api.meta import Obj
from control.errors import BadRequest, Conflict
from control.models import names
from control.models.defaults import default_pod_spec
from control.models.fielderrors import FieldErrors

if TYPE_CHECKING:
    from control.api.objects import ObjectService, Written

__all__ = ["patch_ephemeral", "update_ephemeral", "validate_ephemeral"]

SUB = "ephemeralcontainers"
_RETRIES = 8
# EphemeralContainerCommon fields kube-apiserver refuses (allowedEphemeralContainerFields)
_DENIED = ("ports", "resources", "resizePolicy", "livenessProbe", "readinessProbe",
           "startupProbe", "lifecycle", "restartPolicy")
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")


def _set(value: Any) -> bool:
    """Go's notion of a field being set: not absent, not an empty list or struct."""
    return value not in (None, [], {}, "")


def _check_one(errs: FieldErrors, path: str, ec: Any, *, all_names: set[str],
               others: set[str], volumes: set[str]) -> None:
    if not isinstance(ec, dict):
        errs.type_error(path, ec, "an object")
        return
    name = ec.get("name")
    if not name:
        errs.required(f"{path}.name")
    elif errs.names(f"{path}.name", name, names.dns1123_label):
        if name in all_names:
            errs.duplicate(f"{path}.name", name)
        all_names.add(name)
    if not ec.get("image"):
        errs.required(f"{path}.image")
    policy = ec.get("imagePullPolicy")
    if policy is not None:
        errs.one_of(f"{path}.imagePullPolicy", policy, _PULL_POLICIES)
    target = ec.get("targetContainerName")
    if target and target not in others:
        errs.not_found(f"{path}.targetContainerName", target)
    for key in _DENIED:
        if _set(ec.get(key)):
            errs.forbidden(f"{path}.{key}", "cannot be set for an Ephemeral Container")
    for i, vm in enumerate(errs.list_of(f"{path}.volumeMounts", ec.get("volumeMounts"))):
        if not isinstance(vm, dict):
            continue
        if vm.get("name") not in volumes:
            errs.not_found(f"{path}.volumeMounts[{i}].name", vm.get("name"))
        for key in ("subPath", "subPathExpr"):
            if vm.get(key):
                errs.forbidden(f"{path}.volumeMounts[{i}].{key}",
                               "cannot be set for an Ephemeral Container")


def validate_ephemeral(pod: Obj, old: Obj) -> None:
    """422 Invalid, with kube-apiserver's field paths, if `pod`'s ephemeral containers are
    not a valid successor of `old`'s."""
    errs = FieldErrors()
    spec = pod.get("spec") or {}
    path = "spec.ephemeralContainers"
    items = errs.list_of(path, spec.get("ephemeralContainers"))
    others = {c.get("name") for group in ("containers", "initContainers")
              for c in spec.get(group) or [] if isinstance(c, dict)}
    volumes = {str(v.get("name")) for v in spec.get("volumes") or [] if isinstance(v, dict)}
    all_names = {n for n in others if isinstance(n, str)}
    for i, ec in enumerate(items):
        _check_one(errs, f"{path}[{i}]", ec, all_names=all_names,
                   others={n for n in others if isinstance(n, str)}, volumes=volumes)
    new_by_name = {ec.get("name"): ec for ec in items if isinstance(ec, dict)}
    for i, was in enumerate((old.get("spec") or {}).get("ephemeralContainers") or []):
        now = new_by_name.get(was.get("name"))
        if now is None:
            errs.forbidden("spec", f"existing ephemeral containers {was.get('name')!r} may "
                           "not be removed\n".replace("'", '"'))
        elif now != was:
            errs.forbidden(f"{path}[{i}]", f"existing ephemeral containers "
                           f"\"{was.get('name')}\" may not be changed\n")
    errs.raise_if_any(kind="Pod", group="", name=pod["metadata"]["name"])


def _next_pod(current: Obj, wanted: Any) -> Obj:
    """The stored pod with only `spec.ephemeralContainers` taken from `wanted`, defaulted."""
    if not isinstance(wanted, dict) or not isinstance(wanted.get("spec", {}), dict):
        raise BadRequest("the body of pods/ephemeralcontainers must be a Pod")
    items = (wanted.get("spec") or {}).get("ephemeralContainers")
    new = copy.deepcopy(current)
    if items is None:
        new["spec"].pop("ephemeralContainers", None)
        return new
    if isinstance(items, list):
        spec = {"containers": [], "initContainers": copy.deepcopy(items)}
        default_pod_spec(spec)          # the container defaults (pull policy, messages)
        items = spec["initContainers"]
    new["spec"]["ephemeralContainers"] = items
    return new


async def _write(svc: ObjectService, kv: Any, current: Obj, wanted: Any,
                 dry_run: bool) -> Written:
    info = meta.resource("pods")
    new = _next_pod(current, wanted)
    validate_ephemeral(new, current)
    return await svc.write_update(info, kv, current, new, subresource=SUB, dry_run=dry_run)


async def patch_ephemeral(svc: ObjectService, kv: Any, current: Obj, body: Any, *,
                          patch_type: str, dry_run: bool) -> Written:
    if patch_type == "apply":
        raise BadRequest("server-side apply is not served on pods/ephemeralcontainers; send "
                         "a strategic merge, merge or JSON patch")
    wanted = versions.apply_patch(patch_type, copy.deepcopy(current), body)
    return await _write(svc, kv, current, wanted, dry_run)


async def update_ephemeral(svc: ObjectService, name: str, pod: Any, *, namespace: str,
                           dry_run: bool) -> Written:
    info = meta.resource("pods")
    rv = (pod.get("metadata") or {}).get("resourceVersion") if isinstance(pod, dict) else None
    for _ in range(_RETRIES):
        kv = await svc.get_kv(info, name, namespace)
        if rv and rv != str(kv.mod_revision):
            raise meta.conflict(info, name)
        try:
            return await _write(svc, kv, meta.decode(kv), pod, dry_run)
        except Conflict:
            if rv:
                raise
    raise meta.conflict(info, name)
