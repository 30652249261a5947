"""The scheduler's VolumeBinding plugin, small: a pod whose claims are missing, being deleted
or name a StorageClass that does not exist is not scheduled (kube-scheduler's messages); a
claim bound to a volume with node affinity (a local-path PV) pins the pod to that node; and
once a node is chosen, each unbound WaitForFirstConsumer claim is told the node
(`volume.kubernetes.io/selected-node`) so the provisioner makes its volume there. A
ReadWriteOncePod claim already used by another pod keeps the pod Pending.
"""

from __future__ import annotations

from collections.abc import Callable

from control.clientbase import Client, Obj
from control.controllers.pvbinding import SELECTED_NODE, default_class, node_affinity_matches
from control.controllers.util import is_terminating, meta
from control.errors import NotFound
from control.informer import Informer

__all__ = ["VolumeBinding"]

CONFLICT = "node(s) had volume node affinity conflict"
RWOP = "node has pod using PersistentVolumeClaim with the same name and ReadWriteOncePod " \
    "access mode"


class VolumeBinding:
    def __init__(self, client: Client, *, claims: Informer, volumes: Informer,
                 classes: Informer, pods: Informer, retry: Callable[[], None]) -> None:
        self.client = client
        self.claims, self.volumes, self.classes, self.pods = claims, volumes, classes, pods
        for inf in (claims, volumes, classes):
            inf.add_handler(on_add=lambda _o: retry(), on_update=lambda _o, _n: retry())

    def _claims(self, pod: Obj) -> list[tuple[str, Obj | None]]:
        ns = meta(pod).get("namespace")
        out = []
        for vol in (pod.get("spec") or {}).get("volumes") or []:
            name = (vol.get("persistentVolumeClaim") or {}).get("claimName")
            if name:
                out.append((name, self.claims.get(f"{ns}/{name}")))
        return out

    def _class_of(self, pvc: Obj) -> Obj | None:
        name = (pvc.get("spec") or {}).get("storageClassName")
        if name is None:
            return default_class(self.classes.list())
        return self.classes.get(name) if name else None

    def check(self, pod: Obj) -> str | None:
        """Why the pod cannot be scheduled anywhere yet (None: it may be)."""
        for name, pvc in self._claims(pod):
            if pvc is None:
                return f'persistentvolumeclaim "{name}" not found'
            if is_terminating(pvc):
                return f'persistentvolumeclaim "{name}" is being deleted'
            if (pvc.get("spec") or {}).get("volumeName"):
                continue
            class_name = (pvc.get("spec") or {}).get("storageClassName")
            sc = self._class_of(pvc)
            if class_name and sc is None:
                return f'storageclass.storage.k8s.io "{class_name}" not found'
            if sc is None or sc.get("volumeBindingMode") != "WaitForFirstConsumer":
                return "pod has unbound immediate PersistentVolumeClaims"
        return None

    def _in_use_elsewhere(self, pod: Obj, claim: str) -> bool:
        ns, uid = meta(pod).get("namespace"), meta(pod).get("uid")
        for other in self.pods.list(namespace=ns):
            if meta(other).get("uid") == uid or not (other.get("spec") or {}).get("nodeName") \
                    or (other.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            if any((v.get("persistentVolumeClaim") or {}).get("claimName") == claim
                   for v in (other.get("spec") or {}).get("volumes") or []):
                return True
        return False

    def filter(self, pod: Obj, node: Obj) -> str | None:
        labels = meta(node).get("labels") or {}
        for name, pvc in self._claims(pod):
            if pvc is not None and "ReadWriteOncePod" in \
                    ((pvc.get("spec") or {}).get("accessModes") or []) and \
                    self._in_use_elsewhere(pod, name):
                return RWOP
            volume = (pvc or {}).get("spec", {}).get("volumeName")
            pv = self.volumes.get(volume) if volume else None
            if pv is not None and not node_affinity_matches(pv, labels):
                return CONFLICT
        return None

    async def prebind(self, pod: Obj, node: str) -> None:
        """Name the node on each unbound WaitForFirstConsumer claim of the pod."""
        for _name, pvc in self._claims(pod):
            if pvc is None or (pvc.get("spec") or {}).get("volumeName"):
                continue
            if (meta(pvc).get("annotations") or {}).get(SELECTED_NODE) == node:
                continue
            try:
                await self.client.patch("persistentvolumeclaims", meta(pvc)["name"],
                                        {"metadata": {"annotations": {SELECTED_NODE: node}}},
                                        namespace=meta(pvc)["namespace"])
            except NotFound:
                pass
