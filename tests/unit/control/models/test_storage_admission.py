"""Admission of the storage kinds (control/models/storage.py, storagedefaults.py):
kube-apiserver's defaults, required fields, immutability, and the kubectl get columns."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from control.errors import Invalid
from control.models.tables import table
from control.models.validation import admit


def pvc(**spec) -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": "default"},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}, **spec}}


def causes(exc: Invalid) -> dict[str, str]:
    return {c.field: c.message for c in exc.causes}


def test_pvc_defaults_and_protection_finalizer() -> None:
    out, warnings = admit("persistentvolumeclaims", pvc())
    assert warnings == []
    assert out["spec"]["volumeMode"] == "Filesystem"
    assert out["status"] == {"phase": "Pending"}
    assert out["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]


def test_pvc_required_fields_use_upstream_words() -> None:
    bad = pvc()
    bad["spec"] = {"accessModes": ["ReadWriteSometimes"]}
    with pytest.raises(Invalid) as err:
        admit("persistentvolumeclaims", bad)
    got = causes(err.value)
    assert "spec.resources[storage]" in got
    assert got["spec.accessModes"].startswith('Unsupported value: "ReadWriteSometimes"')
    with pytest.raises(Invalid) as err:
        admit("persistentvolumeclaims", pvc(accessModes=[]))
    assert "at least 1 access mode is required" in causes(err.value)["spec.accessModes"]


def test_pvc_spec_is_immutable_but_binding_fields_are_set_once() -> None:
    old, _ = admit("persistentvolumeclaims", pvc())
    bound = {**old, "spec": {**old["spec"], "volumeName": "pvc-1",
                             "storageClassName": "standard"}}
    admit("persistentvolumeclaims", bound, old=old)
    grown = {**bound, "spec": {**bound["spec"], "resources": {"requests": {"storage": "2Gi"}}}}
    admit("persistentvolumeclaims", grown, old=bound)
    changed = {**bound, "spec": {**bound["spec"], "accessModes": ["ReadWriteMany"]}}
    with pytest.raises(Invalid) as err:
        admit("persistentvolumeclaims", changed, old=bound)
    assert "spec is immutable after creation" in causes(err.value)["spec"]


def test_pv_and_storageclass() -> None:
    pv = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv1"},
          "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                   "hostPath": {"path": "/tmp/pv1"}}}
    out, _ = admit("persistentvolumes", pv)
    assert out["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert out["metadata"]["finalizers"] == ["kubernetes.io/pv-protection"]
    with pytest.raises(Invalid) as err:
        admit("persistentvolumes", {**pv, "spec": {"capacity": {"storage": "1Gi"},
                                                   "accessModes": ["ReadWriteOnce"]}})
    assert "must specify a volume type" in causes(err.value)["spec"]
    sc = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
          "metadata": {"name": "fast"}, "provisioner": "rancher.io/local-path"}
    out, _ = admit("storageclasses", sc)
    assert (out["reclaimPolicy"], out["volumeBindingMode"]) == ("Delete", "Immediate")
    with pytest.raises(Invalid) as err:
        admit("storageclasses", {**out, "provisioner": "other"}, old=out)
    assert causes(err.value)["provisioner"] == \
        "Forbidden: updates to provisioner are forbidden."


def test_columns_as_kubectl_shows_them() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    claim, _ = admit("persistentvolumeclaims", pvc(storageClassName="standard",
                                                  volumeName="pvc-1"))
    claim["status"] = {"phase": "Bound", "capacity": {"storage": "1Gi"},
                       "accessModes": ["ReadWriteOnce"]}
    t = table("persistentvolumeclaims", [claim], now=now)
    assert [c["name"] for c in t["columnDefinitions"]][:6] == [
        "Name", "Status", "Volume", "Capacity", "Access Modes", "StorageClass"]
    assert t["rows"][0]["cells"][:6] == ["data", "Bound", "pvc-1", "1Gi", "RWO", "standard"]
    sc = {"metadata": {"name": "standard", "annotations": {
        "storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer"}
    assert table("storageclasses", [sc], now=now)["rows"][0]["cells"][:4] == [
        "standard (default)", "rancher.io/local-path", "Delete", "WaitForFirstConsumer"]
