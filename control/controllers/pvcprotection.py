"""Storage object in-use protection: the `kubernetes.io/pvc-protection` and
`kubernetes.io/pv-protection` finalizers (added at creation by admission, storagedefaults.py)
are removed here once the object may really go: a claim when no pod that is not finished
uses it, a volume when it is no longer Bound. Until then `kubectl delete pvc` leaves the
claim Terminating, as upstream.
"""

from __future__ import annotations

from control.clientbase import Client, Obj
from control.clock import Clock
from control.controllers.base import Controller
from control.controllers.util import is_terminating, meta
from control.errors import NotFound
from control.informer import Informer, object_key

__all__ = ["PVC_FINALIZER", "PV_FINALIZER", "ProtectionController", "pods_using"]

PVC_FINALIZER = "kubernetes.io/pvc-protection"
PV_FINALIZER = "kubernetes.io/pv-protection"


def pods_using(pods: list[Obj], namespace: str, claim: str) -> list[Obj]:
    """Pods of `namespace` that use claim `claim` and have not finished."""
    out = []
    for pod in pods:
        if meta(pod).get("namespace") != namespace:
            continue
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        for vol in (pod.get("spec") or {}).get("volumes") or []:
            if (vol.get("persistentVolumeClaim") or {}).get("claimName") == claim:
                out.append(pod)
                break
    return out


class ProtectionController(Controller):
    name = "pvc-protection"

    def __init__(self, client: Client, *, clock: Clock, claims: Informer, volumes: Informer,
                 pods: Informer) -> None:
        super().__init__(client, clock=clock)
        self.claims, self.volumes, self.pods = claims, volumes, pods
        claims.add_handler(on_add=self._obj, on_update=lambda _o, n: self._obj(n))
        volumes.add_handler(on_add=self._obj, on_update=lambda _o, n: self._obj(n))
        pods.add_handler(on_delete=self._pod, on_update=lambda _o, n: self._pod(n))

    def _obj(self, obj: Obj) -> None:
        if is_terminating(obj):
            key = object_key(obj)
            self.enqueue(key if "/" in key else f"/{key}")

    def _pod(self, pod: Obj) -> None:
        ns = meta(pod).get("namespace")
        for vol in (pod.get("spec") or {}).get("volumes") or []:
            claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
            if claim:
                self.enqueue(f"{ns}/{claim}")

    async def reconcile(self, key: str) -> None:
        if key.startswith("/"):
            pv = self.volumes.get(key[1:])
            if pv is not None and is_terminating(pv) and \
                    (pv.get("status") or {}).get("phase") != "Bound":
                await self._drop(pv, "persistentvolumes", PV_FINALIZER)
            return
        pvc = self.claims.get(key)
        if pvc is None or not is_terminating(pvc):
            return
        m = meta(pvc)
        if pods_using(self.pods.list(namespace=m["namespace"]), m["namespace"], m["name"]):
            return                          # a pod deletion or completion enqueues us again
        await self._drop(pvc, "persistentvolumeclaims", PVC_FINALIZER)

    async def _drop(self, obj: Obj, resource: str, finalizer: str) -> None:
        m = meta(obj)
        finalizers = list(m.get("finalizers") or [])
        if finalizer not in finalizers:
            return
        finalizers.remove(finalizer)
        try:
            await self.client.patch(resource, m["name"], {"metadata": {
                "finalizers": finalizers, "resourceVersion": m.get("resourceVersion")}},
                namespace=m.get("namespace"))
        except NotFound:
            return
        self.log.info("%s: removed finalizer %s", object_key(obj), finalizer)
