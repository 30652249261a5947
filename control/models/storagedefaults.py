"""Defaults of the storage kinds (PersistentVolume, PersistentVolumeClaim, StorageClass)
and the StatefulSet defaults defaults.py leaves out (retention policy, claim templates), as
kube-apiserver's SetDefaults_* give them. Plain dict edits in place; no validation here.
"""

from __future__ import annotations

from typing import Any

__all__ = ["STORAGE_DEFAULTS", "default_statefulset_extra"]

Obj = dict[str, Any]


def _dict(parent: Obj, key: str) -> Obj | None:
    value = parent.get(key)
    if value is None:
        value = parent[key] = {}
    return value if isinstance(value, dict) else None


def _default_pvc_spec(spec: Obj) -> None:
    spec.setdefault("volumeMode", "Filesystem")


def _protect(obj: Obj, finalizer: str) -> None:
    """The StorageObjectInUseProtection admission plugin: a finalizer at creation."""
    md = obj.get("metadata")
    if isinstance(md, dict):
        finalizers = md.get("finalizers")
        if not isinstance(finalizers, list):
            finalizers = md["finalizers"] = []
        if finalizer not in finalizers:
            finalizers.append(finalizer)


def _default_pvc(obj: Obj, old: Obj | None) -> None:
    spec = obj.get("spec")
    if isinstance(spec, dict):
        _default_pvc_spec(spec)
    if old is None:
        _protect(obj, "kubernetes.io/pvc-protection")
        status = _dict(obj, "status")
        if status is not None:
            status.setdefault("phase", "Pending")


def _default_pv(obj: Obj, old: Obj | None) -> None:
    spec = obj.get("spec")
    if isinstance(spec, dict):
        spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
        spec.setdefault("volumeMode", "Filesystem")
        if isinstance(spec.get("hostPath"), dict):
            spec["hostPath"].setdefault("type", "")
    if old is None:
        _protect(obj, "kubernetes.io/pv-protection")
        status = _dict(obj, "status")
        if status is not None:
            status.setdefault("phase", "Pending")


def _default_storageclass(obj: Obj, old: Obj | None) -> None:
    obj.setdefault("reclaimPolicy", "Delete")
    obj.setdefault("volumeBindingMode", "Immediate")


def default_statefulset_extra(obj: Obj, old: Obj | None) -> None:
    """What defaults.py's StatefulSet defaults leave out: the retention policy (always
    present since 1.27) and each volumeClaimTemplate's kind, apiVersion, volumeMode, phase."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    retention = _dict(spec, "persistentVolumeClaimRetentionPolicy")
    if retention is not None:
        retention.setdefault("whenDeleted", "Retain")
        retention.setdefault("whenScaled", "Retain")
    for tmpl in spec.get("volumeClaimTemplates") or []:
        if not isinstance(tmpl, dict):
            continue
        tmpl.setdefault("apiVersion", "v1")
        tmpl.setdefault("kind", "PersistentVolumeClaim")
        if isinstance(tmpl.get("spec"), dict):
            _default_pvc_spec(tmpl["spec"])
        status = _dict(tmpl, "status")
        if status is not None:
            status.setdefault("phase", "Pending")


STORAGE_DEFAULTS = {"persistentvolumeclaims": _default_pvc, "persistentvolumes": _default_pv,
                    "storageclasses": _default_storageclass}
