"""Storage and StatefulSet admission: PersistentVolume, PersistentVolumeClaim, StorageClass
and StatefulSet defaults and validation as kube-apiserver gives them, plus their
`kubectl get` columns. Registered into validation.py and tables.py as one block; the defaults are in
storagedefaults.py (defaults.py imports them).

Key design choice: a StatefulSet's volumeClaimTemplates count as volumes of its pod
template (each becomes a persistentVolumeClaim volume of the pods), so the template is
validated with them added, as upstream's pods will have them.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from control.models import printers as p
from control.models.fielderrors import FieldErrors
from control.models.podvalidation import validate_pod_spec
from control.models.workloadvalidation import (
    _int_or_percent,
    _spec,
    validate_labels,
    validate_spec_selector,
)

__all__ = ["STORAGE_CHECKS", "STORAGE_COLUMNS", "STORAGE_PRINTERS", "STORAGE_UPDATE_CHECKS",
           "claim_volumes"]

Obj = dict[str, Any]
ACCESS_MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")
_PV_SOURCES = ("hostPath", "local", "nfs", "csi", "iscsi", "fc", "gcePersistentDisk",
               "awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "rbd", "cinder")


# ---- validation ----------------------------------------------------------------------------

def _validate_claim_spec(errs: FieldErrors, spec: Any, path: str) -> None:
    if not isinstance(spec, dict):
        errs.required(path) if spec is None else errs.type_error(path, spec, "an object")
        return
    modes = errs.list_of(f"{path}.accessModes", spec.get("accessModes"))
    if not modes:
        errs.required(f"{path}.accessModes", "at least 1 access mode is required")
    for mode in modes:
        errs.one_of(f"{path}.accessModes", mode, ACCESS_MODES)
    requests = ((spec.get("resources") or {}).get("requests") or {}) \
        if isinstance(spec.get("resources"), dict) else {}
    if not isinstance(requests, dict) or not requests.get("storage"):
        errs.required(f"{path}.resources[storage]")
    if spec.get("volumeMode") is not None:
        errs.one_of(f"{path}.volumeMode", spec["volumeMode"], ("Block", "Filesystem"))


def _validate_pvc(errs: FieldErrors, obj: Obj) -> None:
    _validate_claim_spec(errs, obj.get("spec"), "spec")


def _validate_pvc_update(errs: FieldErrors, new: Obj, old: Obj) -> None:
    def frozen(spec: Any, old_spec: Any) -> Obj:
        out = copy.deepcopy(spec) if isinstance(spec, dict) else {}
        out.pop("resources", None)
        out.pop("volumeAttributesClassName", None)
        if not (old_spec or {}).get("volumeName"):
            out.pop("volumeName", None)        # binding sets it once
        if not (old_spec or {}).get("storageClassName"):
            out.pop("storageClassName", None)  # the default class is set once
        return out
    old_spec = old.get("spec") or {}
    if frozen(new.get("spec"), old_spec) != frozen(old_spec, old_spec):
        errs.forbidden("spec", "spec is immutable after creation except resources.requests "
                       "and volumeAttributesClassName for bound claims")


def _validate_pv(errs: FieldErrors, obj: Obj) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        errs.required("spec")
        return
    modes = errs.list_of("spec.accessModes", spec.get("accessModes"))
    if not modes:
        errs.required("spec.accessModes")
    for mode in modes:
        errs.one_of("spec.accessModes", mode, ACCESS_MODES)
    if not (spec.get("capacity") or {}).get("storage"):
        errs.required("spec.capacity")
    sources = [k for k in _PV_SOURCES if spec.get(k) is not None]
    if not sources:
        errs.required("spec", "must specify a volume type")
    elif len(sources) > 1:
        errs.forbidden(f"spec.{sources[1]}", "may not specify more than 1 volume type")
    if isinstance(spec.get("hostPath"), dict) and not spec["hostPath"].get("path"):
        errs.required("spec.hostPath.path")
    errs.one_of("spec.persistentVolumeReclaimPolicy",
                spec.get("persistentVolumeReclaimPolicy", "Retain"),
                ("Delete", "Recycle", "Retain"))


def _validate_storageclass(errs: FieldErrors, obj: Obj) -> None:
    if not obj.get("provisioner"):
        errs.required("provisioner")
    errs.one_of("reclaimPolicy", obj.get("reclaimPolicy"), ("Delete", "Retain"))
    errs.one_of("volumeBindingMode", obj.get("volumeBindingMode"),
                ("Immediate", "WaitForFirstConsumer"))


def _validate_storageclass_update(errs: FieldErrors, new: Obj, old: Obj) -> None:
    for key in ("provisioner", "parameters", "reclaimPolicy", "volumeBindingMode"):
        if new.get(key) != old.get(key):
            errs.forbidden(key, f"updates to {key} are forbidden.")


def claim_volumes(spec: Obj) -> list[Obj]:
    """The pod volumes a StatefulSet's volumeClaimTemplates stand for (claim names are
    filled in per pod by the controller)."""
    return [{"name": (t.get("metadata") or {}).get("name"),
             "persistentVolumeClaim": {"claimName": (t.get("metadata") or {}).get("name")}}
            for t in spec.get("volumeClaimTemplates") or [] if isinstance(t, dict)]


def _strategy(errs: FieldErrors, strategy: Any) -> None:
    if not isinstance(strategy, dict):
        return
    kind = strategy.get("type", "RollingUpdate")
    if not errs.one_of("spec.updateStrategy.type", kind, ("RollingUpdate", "OnDelete")):
        return
    rolling = strategy.get("rollingUpdate")
    if kind == "OnDelete":
        if rolling is not None:
            errs.invalid("spec.updateStrategy.rollingUpdate", rolling,
                         "only allowed for updateStrategy 'RollingUpdate'")
        return
    if not isinstance(rolling, dict):
        return
    if rolling.get("partition") is not None:
        errs.int_range("spec.updateStrategy.rollingUpdate.partition", rolling["partition"], 0)
    if rolling.get("maxUnavailable") is not None:
        path = "spec.updateStrategy.rollingUpdate.maxUnavailable"
        value = _int_or_percent(errs, path, rolling["maxUnavailable"], max_100=True)
        if value == 0:
            errs.invalid(path, rolling["maxUnavailable"], "must be greater than 0")


def validate_statefulset(errs: FieldErrors, obj: Obj) -> None:
    spec = _spec(errs, obj)
    if spec is None:
        return
    for key in ("replicas", "minReadySeconds", "revisionHistoryLimit"):
        if spec.get(key) is not None:
            errs.int_range(f"spec.{key}", spec[key], 0)
    policy = spec.get("podManagementPolicy", "OrderedReady")
    if policy not in ("OrderedReady", "Parallel"):
        errs.invalid("spec.podManagementPolicy", policy,
                     "must be 'OrderedReady' or 'Parallel'")
    _strategy(errs, spec.get("updateStrategy"))
    retention = spec.get("persistentVolumeClaimRetentionPolicy")
    if isinstance(retention, dict):
        for key in ("whenDeleted", "whenScaled"):
            errs.one_of(f"spec.persistentVolumeClaimRetentionPolicy.{key}",
                        retention.get(key, "Retain"), ("Retain", "Delete"))
    for i, tmpl in enumerate(errs.list_of("spec.volumeClaimTemplates",
                                          spec.get("volumeClaimTemplates"))):
        path = f"spec.volumeClaimTemplates[{i}]"
        if not isinstance(tmpl, dict) or not (tmpl.get("metadata") or {}).get("name"):
            errs.required(f"{path}.metadata.name")
            continue
        _validate_claim_spec(errs, tmpl.get("spec"), f"{path}.spec")
    selector = validate_spec_selector(errs, "spec.selector", spec.get("selector"))
    template = spec.get("template")
    if not isinstance(template, dict):
        errs.required("spec.template")
        return
    labels = (template.get("metadata") or {}).get("labels")
    validate_labels(errs, "spec.template.metadata.labels", labels)
    if selector is not None and not selector.matches(labels if isinstance(labels, dict)
                                                     else None):
        errs.invalid("spec.template.metadata.labels", labels or {},
                     "`selector` does not match template `labels`")
    pod = template.get("spec")
    if isinstance(pod, dict):
        pod = dict(pod)
        claims = [v for v in claim_volumes(spec) if v["name"]]
        pod["volumes"] = list(pod.get("volumes") or []) + claims
    validate_pod_spec(errs, pod, "spec.template.spec", template=True)


_MUTABLE_STS = ("replicas", "ordinals", "template", "updateStrategy",
                "persistentVolumeClaimRetentionPolicy", "minReadySeconds")


def validate_statefulset_update(errs: FieldErrors, new: Obj, old: Obj) -> None:
    def frozen(o: Obj) -> Obj:
        return {k: v for k, v in (o.get("spec") or {}).items() if k not in _MUTABLE_STS}
    if frozen(new) != frozen(old):
        errs.forbidden("spec", "updates to statefulset spec for fields other than 'replicas', "
                       "'ordinals', 'template', 'updateStrategy', "
                       "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are "
                       "forbidden")


STORAGE_CHECKS = {"persistentvolumeclaims": _validate_pvc, "persistentvolumes": _validate_pv,
                  "storageclasses": _validate_storageclass,
                  "statefulsets": validate_statefulset}
STORAGE_UPDATE_CHECKS = {"persistentvolumeclaims": _validate_pvc_update,
                         "storageclasses": _validate_storageclass_update,
                         "statefulsets": validate_statefulset_update}


# ---- kubectl get columns -------------------------------------------------------------------

def _modes(modes: Any) -> str:
    short = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX",
             "ReadWriteOncePod": "RWOP"}
    return ",".join(short.get(m, m) for m in modes or [])


def _pvc_cells(o: Obj, now: datetime) -> list[Any]:
    spec, status = o.get("spec") or {}, o.get("status") or {}
    bound = status.get("phase") == "Bound"
    return [p.dig(o, "metadata", "name"), status.get("phase") or "",
            spec.get("volumeName") or "",
            ((status.get("capacity") or {}).get("storage") or "") if bound else "",
            _modes(status.get("accessModes")) if bound else "",
            spec.get("storageClassName") or "", spec.get("volumeAttributesClassName") or "<unset>",
            p.age(p.dig(o, "metadata", "creationTimestamp"), now),
            spec.get("volumeMode") or ""]


def _pv_cells(o: Obj, now: datetime) -> list[Any]:
    spec, status = o.get("spec") or {}, o.get("status") or {}
    ref = spec.get("claimRef") or {}
    claim = f"{ref.get('namespace')}/{ref.get('name')}" if ref.get("name") else ""
    return [p.dig(o, "metadata", "name"), (spec.get("capacity") or {}).get("storage") or "",
            _modes(spec.get("accessModes")), spec.get("persistentVolumeReclaimPolicy") or "",
            status.get("phase") or "", claim, spec.get("storageClassName") or "",
            spec.get("volumeAttributesClassName") or "<unset>", status.get("reason") or "",
            p.age(p.dig(o, "metadata", "creationTimestamp"), now),
            spec.get("volumeMode") or ""]


def _sc_cells(o: Obj, now: datetime) -> list[Any]:
    name = p.dig(o, "metadata", "name")
    ann = p.dig(o, "metadata", "annotations") or {}
    if "true" in (ann.get("storageclass.kubernetes.io/is-default-class"),
                  ann.get("storageclass.beta.kubernetes.io/is-default-class")):
        name = f"{name} (default)"
    return [name, o.get("provisioner") or "", o.get("reclaimPolicy") or "",
            o.get("volumeBindingMode") or "", bool(o.get("allowVolumeExpansion")),
            p.age(p.dig(o, "metadata", "creationTimestamp"), now)]


def _col(name: str, kind: str = "string", prio: int = 0) -> tuple[str, str, int, str]:
    return (name, kind, prio, name)


_NAME = ("Name", "string", 0, "Name must be unique within a namespace.")
STORAGE_COLUMNS = {
    "persistentvolumeclaims": [_NAME, _col("Status"), _col("Volume"), _col("Capacity"),
                               _col("Access Modes"), _col("StorageClass"),
                               _col("VolumeAttributesClass"), _col("Age"),
                               _col("VolumeMode", prio=1)],
    "persistentvolumes": [_NAME, _col("Capacity"), _col("Access Modes"),
                          _col("Reclaim Policy"), _col("Status"), _col("Claim"),
                          _col("StorageClass"), _col("VolumeAttributesClass"), _col("Reason"),
                          _col("Age"), _col("VolumeMode", prio=1)],
    "storageclasses": [_NAME, _col("Provisioner"), _col("ReclaimPolicy"),
                       _col("VolumeBindingMode"), _col("AllowVolumeExpansion", "string"),
                       _col("Age")],
}
STORAGE_PRINTERS = {"persistentvolumeclaims": _pvc_cells, "persistentvolumes": _pv_cells,
                    "storageclasses": _sc_cells}
