"""The ServiceAccount admission plugin, as kube-apiserver's: every new pod runs as a
ServiceAccount (`spec.serviceAccountName`, default `default`) that must exist, and unless
`automountServiceAccountToken` is false (the pod's setting wins over the ServiceAccount's)
it gets the projected volume `kube-api-access-XXXXX` (a bound token, the cluster's CA and the
namespace), mounted read-only at /var/run/secrets/kubernetes.io/serviceaccount in every
container that mounts nothing there itself. The kubelet fills the volume (knet.kubelet).

A missing `default` ServiceAccount is looked up again a few times first: the ServiceAccount
controller makes it right after its namespace appears.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from control.errors import Forbidden, NotFound

__all__ = ["SA_MOUNT_PATH", "ServiceAccountAdmission", "api_access_volume"]

Obj = dict[str, Any]
SA_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
VOLUME_PREFIX = "kube-api-access-"
TOKEN_SECONDS = 3607                   # kube-apiserver's default for the projected token
MIRROR = "kubernetes.io/config.mirror"
_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"   # k8s.io/apimachinery utilrand


def api_access_volume(name: str) -> Obj:
    """The projected volume kube-apiserver adds (field for field)."""
    return {"name": name, "projected": {"defaultMode": 0o644, "sources": [
        {"serviceAccountToken": {"expirationSeconds": TOKEN_SECONDS, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt",
                       "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
            "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}


class ServiceAccountAdmission:
    """`await plugin(objects, "pods", pod)` mutates a pod being created in place."""

    def __init__(self, *, attempts: int = 10, interval: float = 0.1,
                 rng: random.Random | None = None) -> None:
        self.attempts = attempts
        self.interval = interval
        self.rng = rng or random.Random()

    async def __call__(self, objects: Any, plural: str, obj: Obj) -> None:
        if plural != "pods":
            return
        md, spec = obj["metadata"], obj.setdefault("spec", {})
        if MIRROR in (md.get("annotations") or {}):
            return
        name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        spec["serviceAccountName"] = spec["serviceAccount"] = name
        namespace = md.get("namespace") or "default"
        account = await self._lookup(objects, namespace, name)
        if account is None:
            pod = md.get("generateName") or md.get("name", "")
            raise Forbidden(f'pods "{pod}" is forbidden: error looking up service account '
                            f'{namespace}/{name}: serviceaccount "{name}" not found',
                            kind="pods", name=pod)
        automount = spec.get("automountServiceAccountToken")
        if automount is None:
            automount = account.get("automountServiceAccountToken")
        if automount is False:
            return
        self._mount(spec)

    async def _lookup(self, objects: Any, namespace: str, name: str) -> Obj | None:
        attempts = self.attempts if name == "default" else 1
        for i in range(attempts):
            if i:
                await asyncio.sleep(self.interval * (1 + self.rng.random()))
            try:
                found: Obj = await objects.get("serviceaccounts", name, namespace=namespace)
                return found
            except NotFound:
                continue
        return None

    def _mount(self, spec: Obj) -> None:
        containers = [c for key in ("initContainers", "containers")
                      for c in spec.get(key) or []]
        needing = [c for c in containers if not any(
            m.get("mountPath") == SA_MOUNT_PATH for m in c.get("volumeMounts") or [])]
        if not needing:
            return
        volumes = spec.setdefault("volumes", [])
        existing = next((v["name"] for v in volumes
                         if str(v.get("name", "")).startswith(VOLUME_PREFIX)
                         and "projected" in v), None)
        vol_name = existing or VOLUME_PREFIX + "".join(self.rng.choice(_ALPHANUMS)
                                                       for _ in range(5))
        if existing is None:
            volumes.append(api_access_volume(vol_name))
        for c in needing:
            c.setdefault("volumeMounts", []).append(
                {"name": vol_name, "readOnly": True, "mountPath": SA_MOUNT_PATH})
