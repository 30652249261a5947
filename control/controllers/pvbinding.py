"""Pure claim/volume logic for the PV binder (persistentvolume.py) and the scheduler's volume
checks: the annotations and names upstream uses, the default StorageClass kind ships, which
existing PV fits a claim, and what the local-path provisioner's PV and helper pod look like.
Only `ensure_default_class` writes.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

from control.clientbase import Client, Obj
from control.controllers.util import meta
from control.errors import AlreadyExists, ApiError

__all__ = [
    "BIND_COMPLETED", "BOUND_BY_CONTROLLER", "DEFAULT_CLASS_ANNOTATION", "HELPER_LABEL",
    "HELPER_NAMESPACE", "PROVISIONED_BY", "PROVISIONER", "ROOT_ANNOTATION", "SELECTED_NODE",
    "claim_ref", "claims_match", "default_class", "ensure_default_class", "find_volume",
    "helper_name", "helper_pod", "new_volume", "node_affinity_matches", "storage_bytes",
]

PROVISIONER = "rancher.io/local-path"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
ROOT_ANNOTATION = "knet.io/local-path-root"
HELPER_NAMESPACE = "kube-system"
HELPER_LABEL = "knet.io/helper-for-pv"
_BETA_DEFAULT = "storageclass.beta.kubernetes.io/is-default-class"

STANDARD_CLASS: Obj = {
    "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
    "metadata": {"name": "standard", "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
    "provisioner": PROVISIONER, "reclaimPolicy": "Delete",
    "volumeBindingMode": "WaitForFirstConsumer",
}


async def ensure_default_class(client: Client, log: logging.Logger) -> None:
    """Create kind's `standard` StorageClass unless it exists (at controller start)."""
    with contextlib.suppress(AlreadyExists):
        await client.create("storageclasses", dict(STANDARD_CLASS))
        log.info("created the default StorageClass standard (%s)", PROVISIONER)


def default_class(classes: list[Obj]) -> Obj | None:
    """The default StorageClass; with several, the newest (as upstream since 1.26)."""
    marked = [c for c in classes
              if "true" in ((meta(c).get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION),
                            (meta(c).get("annotations") or {}).get(_BETA_DEFAULT))]
    marked.sort(key=lambda c: (meta(c).get("creationTimestamp") or "", meta(c)["name"]))
    return marked[-1] if marked else None


def storage_bytes(value: Any) -> float:
    from control.scheduler import parse_quantity
    try:
        return parse_quantity(value or 0)
    except ValueError:
        return 0.0


def claim_ref(pvc: Obj) -> Obj:
    m = meta(pvc)
    return {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": m["namespace"],
            "name": m["name"], "uid": m.get("uid"), "resourceVersion": m.get("resourceVersion")}


def claims_match(pv: Obj, pvc: Obj) -> bool:
    ref = (pv.get("spec") or {}).get("claimRef") or {}
    m = meta(pvc)
    return (ref.get("name") == m.get("name") and ref.get("namespace") == m.get("namespace")
            and ref.get("uid") in (None, m.get("uid")))


def find_volume(pvc: Obj, volumes: list[Obj]) -> Obj | None:
    """An existing PV for the claim: one pre-bound to it, else the smallest Available one of
    the same class with enough capacity and every requested access mode."""
    spec = pvc.get("spec") or {}
    for pv in volumes:
        if claims_match(pv, pvc) and (pv.get("spec") or {}).get("claimRef", {}).get("uid"):
            return pv
    want = storage_bytes(((spec.get("resources") or {}).get("requests") or {}).get("storage"))
    modes = set(spec.get("accessModes") or [])
    fits = []
    for pv in volumes:
        ps = pv.get("spec") or {}
        if ps.get("claimRef") and not claims_match(pv, pvc):
            continue
        if (pv.get("status") or {}).get("phase") not in (None, "Available", "Pending") \
                and not claims_match(pv, pvc):
            continue
        if meta(pv).get("deletionTimestamp"):
            continue
        if (ps.get("storageClassName") or "") != (spec.get("storageClassName") or ""):
            continue
        if not modes <= set(ps.get("accessModes") or []):
            continue
        size = storage_bytes((ps.get("capacity") or {}).get("storage"))
        if size >= want and ps.get("volumeMode", "Filesystem") == \
                spec.get("volumeMode", "Filesystem"):
            fits.append((size, meta(pv)["name"], pv))
    return min(fits, key=lambda t: (t[0], t[1]))[2] if fits else None


def new_volume(pvc: Obj, sc: Obj, node: str, root: str) -> Obj:
    """The PV the local-path provisioner makes: `pvc-<uid>`, a DirectoryOrCreate hostPath
    `<root>/pvc-<uid>_<ns>_<name>` on `node`, pinned there by node affinity."""
    m, spec = meta(pvc), pvc.get("spec") or {}
    name = f"pvc-{m['uid']}"
    path = os.path.join(root, f"{name}_{m['namespace']}_{m['name']}")
    return {"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name, "annotations": {
                PROVISIONED_BY: PROVISIONER, "local.path.provisioner/selected-node": node}},
            "spec": {"capacity": {"storage": ((spec.get("resources") or {}).get("requests")
                                              or {}).get("storage", "0")},
                     "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
                     "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy") or "Delete",
                     "storageClassName": meta(sc)["name"],
                     "volumeMode": spec.get("volumeMode", "Filesystem"),
                     "hostPath": {"path": path, "type": "DirectoryOrCreate"},
                     "claimRef": claim_ref(pvc),
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                         {"key": "kubernetes.io/hostname", "operator": "In",
                          "values": [node]}]}]}}}}


def node_affinity_matches(pv: Obj, labels: dict[str, str]) -> bool:
    from control.models.selectors import selector_from_spec
    terms = ((((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required") or {})
             .get("nodeSelectorTerms")) or []
    if not terms:
        return True
    for term in terms:
        try:
            if selector_from_spec({"matchExpressions": term.get("matchExpressions") or []}
                                  ).matches(labels):
                return True
        except ApiError:        # a malformed term matches nothing, as upstream
            continue
    return False


def helper_name(pv: Obj) -> str:
    return f"helper-pod-delete-{meta(pv)['name']}"[:63]


def _pv_node(pv: Obj) -> str | None:
    node = (meta(pv).get("annotations") or {}).get("local.path.provisioner/selected-node")
    return str(node) if node else None


def helper_pod(pv: Obj) -> Obj | None:
    """local-path's `helper-pod-delete-*`: on the volume's node, `rm -rf` its directory
    (mounted through its parent as a hostPath). None if the PV names no node or path."""
    path = ((pv.get("spec") or {}).get("hostPath") or {}).get("path")
    node = _pv_node(pv)
    if not path or not node:
        return None
    parent, base = os.path.dirname(path), os.path.basename(path)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": helper_name(pv), "namespace": HELPER_NAMESPACE,
                         "labels": {HELPER_LABEL: meta(pv)["name"]}},
            "spec": {"nodeName": node, "restartPolicy": "Never",
                     "tolerations": [{"operator": "Exists"}],
                     "containers": [{"name": "helper-pod", "image": "busybox",
                                     "command": ["sh", "-c", f"rm -rf '/data/{base}'"],
                                     "volumeMounts": [{"name": "data",
                                                       "mountPath": "/data"}]}],
                     "volumes": [{"name": "data", "hostPath": {
                         "path": parent, "type": "DirectoryOrCreate"}}]}}
