"""Admission of API objects: Kubernetes defaulting, then validation, on every write.

    obj, warnings = admit("deployments", body)            # create
    obj, warnings = admit("services", body, old=stored)   # update

`admit` works on plain wire dicts (pydantic is too slow for the API's 2,000 writes/s and
would reorder what users wrote); the models in this package are for typed reads. It returns
a defaulted copy with every unknown field kept, plus one warning per field Kubernetes
defines that knet keeps but does not act on (the API server sends them as `Warning`
headers). All problems are collected and raised together as one 422 Invalid whose causes
carry the field paths, as kubectl expects.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from control.errors import BadRequest
from control.models import batch, names, networking
from control.models.autoscaling import AUTOSCALING_CHECKS
from control.models.daemonvalidation import validate_daemonset
from control.models.defaults import apply_defaults, copy_json
from control.models.fielderrors import FieldErrors
from control.models.podvalidation import validate_pod_spec, validate_pod_update
from control.models.rbacvalidation import (
    RBAC_KINDS,
    rbac_name,
    validate_binding_update,
    validate_cluster_role,
    validate_cluster_role_binding,
    validate_role,
    validate_role_binding,
)
from control.models.resources import RESOURCES, ResourceInfo
from control.models.servicevalidation import (
    validate_endpoints,
    validate_endpointslice,
    validate_service,
    validate_service_update,
)
from control.models.storage import STORAGE_CHECKS, STORAGE_UPDATE_CHECKS
from control.models.workloadvalidation import (
    validate_deployment,
    validate_labels,
    validate_replicaset,
    validate_replication_controller,
    validate_workload_update,
)

__all__ = ["admit", "copy_json"]

Obj = dict[str, Any]
Check = Callable[[FieldErrors, Obj], object]
UpdateCheck = Callable[[FieldErrors, Obj, Obj], None]

_INFO = {r.plural: r for r in RESOURCES}
_LABEL_NAMED = frozenset({"services", "namespaces"})
_ANNOTATIONS_MAX = 256 * 1024
_DATA_MAX = 1024 * 1024


def _metadata(errs: FieldErrors, info: ResourceInfo, obj: Obj) -> str:
    md = obj.get("metadata")
    if not isinstance(md, dict):
        errs.required("metadata") if md is None else errs.type_error("metadata", md,
                                                                      "an object")
        return ""
    name = md.get("name")
    check: Callable[[str], tuple[str, ...]] = (
        rbac_name if info.plural in RBAC_KINDS
        else names.dns1123_label if info.plural in _LABEL_NAMED else names.dns1123_subdomain)
    if name:
        errs.names("metadata.name", name, check)
    elif md.get("generateName"):
        prefix = str(md["generateName"])
        errs.names("metadata.generateName", prefix.rstrip("-") or prefix, check)
    else:
        errs.required("metadata.name", "name or generateName is required")
    ns = md.get("namespace")
    if info.namespaced and ns:
        errs.names("metadata.namespace", ns, names.dns1123_label)
    elif not info.namespaced and ns:
        errs.forbidden("metadata.namespace", "not allowed on this type")
    validate_labels(errs, "metadata.labels", md.get("labels"))
    _annotations(errs, md.get("annotations"))
    _owner_references(errs, md.get("ownerReferences"))
    for i, fin in enumerate(errs.list_of("metadata.finalizers", md.get("finalizers"))):
        errs.names(f"metadata.finalizers[{i}]", fin, names.qualified_name)
    return str(name or md.get("generateName") or "")


def _annotations(errs: FieldErrors, annotations: Any) -> None:
    if annotations is None:
        return
    if not isinstance(annotations, dict):
        errs.type_error("metadata.annotations", annotations, "a map of strings")
        return
    size = 0
    for key, value in annotations.items():
        errs.names("metadata.annotations", key, names.qualified_name)
        if not isinstance(value, str):
            errs.type_error(f"metadata.annotations[{key}]", value, "a string")
            continue
        size += len(key) + len(value)
    if size > _ANNOTATIONS_MAX:
        errs.too_long("metadata.annotations", _ANNOTATIONS_MAX)


def _owner_references(errs: FieldErrors, refs: Any) -> None:
    controllers = 0
    for i, ref in enumerate(errs.list_of("metadata.ownerReferences", refs)):
        path = f"metadata.ownerReferences[{i}]"
        if not isinstance(ref, dict):
            errs.type_error(path, ref, "an object")
            continue
        for key in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(key):
                errs.required(f"{path}.{key}")
        controllers += bool(ref.get("controller"))
    if controllers > 1:
        errs.invalid("metadata.ownerReferences", refs,
                     "Only one reference can have Controller set to true")


def _validate_pod(errs: FieldErrors, obj: Obj) -> None:
    validate_pod_spec(errs, obj.get("spec"), "spec", template=False)


def _data_keys(errs: FieldErrors, obj: Obj, fields: tuple[str, ...]) -> int:
    seen: set[str] = set()
    size = 0
    for field in fields:
        data = obj.get(field)
        if data is None:
            continue
        if not isinstance(data, dict):
            errs.type_error(field, data, "a map of strings")
            continue
        for key, value in data.items():
            errs.names(f"{field}[{key}]", key, names.config_key)
            if key in seen:
                errs.invalid(f"{field}[{key}]", key, "duplicate of key present in "
                             + " or ".join(f for f in fields if f != field))
            seen.add(key)
            if not isinstance(value, str):
                errs.type_error(f"{field}[{key}]", value, "a string")
            else:
                size += len(value)
    return size


def _validate_configmap(errs: FieldErrors, obj: Obj) -> None:
    if _data_keys(errs, obj, ("data", "binaryData")) > _DATA_MAX:
        errs.too_long("data", _DATA_MAX)


def _fold_string_data(errs: FieldErrors, obj: Obj) -> None:
    """Secrets: stringData is write-only; its values win over data's, as in Kubernetes."""
    string_data = obj.pop("stringData", None)
    if string_data is None:
        return
    if not isinstance(string_data, dict):
        errs.type_error("stringData", string_data, "a map of strings")
        return
    data = obj.get("data")
    if data is None:
        data = obj["data"] = {}
    if isinstance(data, dict):
        for key, value in string_data.items():
            if not isinstance(value, str):
                errs.type_error(f"stringData[{key}]", value, "a string")
                continue
            data[key] = base64.b64encode(value.encode()).decode()


def _validate_secret(errs: FieldErrors, obj: Obj) -> None:
    _fold_string_data(errs, obj)
    size = _data_keys(errs, obj, ("data",))
    for key, value in (obj.get("data") or {}).items() if isinstance(obj.get("data"),
                                                                    dict) else ():
        if isinstance(value, str):
            try:
                size += len(base64.b64decode(value, validate=True)) - len(value)
            except (binascii.Error, ValueError):
                errs.invalid(f"data[{key}]", "<secret contents redacted>",
                             "illegal base64 data")
    if size > _DATA_MAX:
        errs.too_long("data", _DATA_MAX)
    required = {"kubernetes.io/tls": ("tls.crt", "tls.key"),
                "kubernetes.io/dockerconfigjson": (".dockerconfigjson",)}
    for key in required.get(str(obj.get("type")), ()):
        if key not in (obj.get("data") or {}):
            errs.required(f"data[{key}]")


def _immutable_data_update(errs: FieldErrors, new: Obj, old: Obj) -> None:
    if old.get("type") != new.get("type") and "type" in old:
        errs.invalid("type", new.get("type"), "field is immutable")
    if not old.get("immutable"):
        return
    if not new.get("immutable"):
        errs.forbidden("immutable", "field is immutable when `immutable` is set")
    for field in ("data", "binaryData"):
        if new.get(field) != old.get(field):
            errs.forbidden(field, "field is immutable when `immutable` is set")


def _validate_node(errs: FieldErrors, obj: Obj) -> None:
    spec = errs.map_of("spec", obj.get("spec"))
    for i, taint in enumerate(errs.list_of("spec.taints", spec.get("taints"))):
        path = f"spec.taints[{i}]"
        if not isinstance(taint, dict) or not taint.get("key"):
            errs.required(f"{path}.key")
            continue
        errs.names(f"{path}.key", taint["key"], names.qualified_name)
        if taint.get("value"):
            errs.names(f"{path}.value", taint["value"], names.label_value)
        errs.one_of(f"{path}.effect", taint.get("effect"),
                    ("NoSchedule", "PreferNoSchedule", "NoExecute"))


def _validate_event(errs: FieldErrors, obj: Obj) -> None:
    involved = obj.get("involvedObject")
    if not isinstance(involved, dict):
        errs.required("involvedObject")
        return
    md = obj.get("metadata")
    ns = md.get("namespace") if isinstance(md, dict) else None
    if involved.get("namespace") and ns and involved["namespace"] != ns:
        errs.invalid("involvedObject.namespace", involved["namespace"],
                     "does not match event.namespace")


def _validate_lease(errs: FieldErrors, obj: Obj) -> None:
    spec = obj.get("spec")
    if isinstance(spec, dict):
        if spec.get("leaseDurationSeconds") is not None:
            errs.int_range("spec.leaseDurationSeconds", spec["leaseDurationSeconds"], 1)
        if spec.get("leaseTransitions") is not None:
            errs.int_range("spec.leaseTransitions", spec["leaseTransitions"], 0)


# Kinds knet stores and serves but runs no controller for (Kubernetes would create pods).
_NOT_RUN: dict[str, str] = {}

_CHECKS: dict[str, Check] = {
    "pods": _validate_pod, "services": validate_service, "endpoints": validate_endpoints,
    "endpointslices": validate_endpointslice, "deployments": validate_deployment,
    "replicasets": validate_replicaset,
    "replicationcontrollers": validate_replication_controller,
    "daemonsets": validate_daemonset, "statefulsets": validate_replicaset,
    "configmaps": _validate_configmap, "secrets": _validate_secret, "nodes": _validate_node,
    "events": _validate_event, "leases": _validate_lease, "jobs": batch.validate_job,
    "cronjobs": batch.validate_cronjob, **networking.CHECKS,
    "roles": validate_role, "clusterroles": validate_cluster_role,
    "rolebindings": validate_role_binding, "clusterrolebindings": validate_cluster_role_binding,
}
_UPDATE_CHECKS: dict[str, UpdateCheck] = {
    "pods": validate_pod_update, "services": validate_service_update,
    "deployments": validate_workload_update, "replicasets": validate_workload_update,
    "daemonsets": validate_workload_update, "statefulsets": validate_workload_update,
    "jobs": batch.validate_job_update,
    "configmaps": _immutable_data_update, "secrets": _immutable_data_update,
    "rolebindings": validate_binding_update, "clusterrolebindings": validate_binding_update,
}

_CHECKS.update(STORAGE_CHECKS)  # storage kinds and StatefulSets (control/models/storage.py)
_UPDATE_CHECKS.update(STORAGE_UPDATE_CHECKS)
_CHECKS.update(AUTOSCALING_CHECKS)  # HorizontalPodAutoscaler (control/models/autoscaling.py)

def admit(resource: str, obj: Obj, *, old: Obj | None = None,
          copy: bool = True) -> tuple[Obj, list[str]]:
    """Default and validate `obj` (a wire dict) of `resource` (a plural of resources.py).

    Returns (defaulted object, warnings); raises Invalid (422) with field causes, or
    BadRequest if the body is not an object. `copy=False` defaults `obj` in place (for a
    caller that already holds a private copy; on error it is left half-defaulted)."""
    info = _INFO.get(resource)
    if not isinstance(obj, dict):
        kind = info.kind if info else resource
        raise BadRequest(f"the body of a {kind} must be a JSON object, got "
                         f"{type(obj).__name__}")
    if copy:
        obj = copy_json(obj)
    if info is None:
        return obj, []
    apply_defaults(resource, obj, old=old)
    errs = FieldErrors()
    name = _metadata(errs, info, obj)
    check = _CHECKS.get(resource)
    if check is not None:
        check(errs, obj)
    update_check = _UPDATE_CHECKS.get(resource) if old is not None else None
    if update_check is not None and old is not None:
        update_check(errs, obj, old)
    if old is None and resource == "pods" and isinstance(obj.get("spec"), dict) \
            and obj["spec"].get("ephemeralContainers"):        # only pods/ephemeralcontainers
        errs.forbidden("spec.ephemeralContainers", "cannot be set on create")
    if old is None and resource in _NOT_RUN:
        errs.warn("spec", f"stored and served, but knet runs no controller for "
                  f"{_NOT_RUN[resource]}: no pods will be created for it")
    if old is None and resource in networking.NOT_ENFORCED:
        errs.warn("spec", networking.NOT_ENFORCED[resource])
    errs.raise_if_any(kind=info.kind, group=info.group, name=name)
    return obj, errs.warnings
