"""Typed (permissive) models of the storage kinds: PersistentVolume, PersistentVolumeClaim
(core/v1) and StorageClass (storage.k8s.io/v1); spec and status stay plain JSON. Admission is
in storage.py and storagedefaults.py."""

from __future__ import annotations

from typing import Any

from control.models.meta import TopLevel

__all__ = ["STORAGE_MODELS", "PersistentVolume", "PersistentVolumeClaim", "StorageClass"]


class PersistentVolumeClaim(TopLevel):
    api_version: str | None = "v1"
    kind: str | None = "PersistentVolumeClaim"
    spec: dict[str, Any] | None = None
    status: dict[str, Any] | None = None


class PersistentVolume(TopLevel):
    api_version: str | None = "v1"
    kind: str | None = "PersistentVolume"
    spec: dict[str, Any] | None = None
    status: dict[str, Any] | None = None


class StorageClass(TopLevel):
    api_version: str | None = "storage.k8s.io/v1"
    kind: str | None = "StorageClass"
    provisioner: str | None = None
    parameters: dict[str, str] | None = None
    reclaim_policy: str | None = None
    volume_binding_mode: str | None = None
    allow_volume_expansion: bool | None = None


STORAGE_MODELS: dict[str, type[TopLevel]] = {
    "persistentvolumeclaims": PersistentVolumeClaim, "persistentvolumes": PersistentVolume,
    "storageclasses": StorageClass}
