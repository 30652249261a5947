"""The PersistentVolume binder with kind's local-path provisioner built in: claims get the
default StorageClass, wait for their first consumer, get a PV on that consumer's node, bind;
released volumes are reclaimed (Delete: the directory is removed on its node, then the PV).

Keys are claims (`ns/name`) and volumes (`/name`, cluster-scoped). A claim with no class
gets the default one (upstream's retroactive default assignment); a class that does not exist
leaves it Pending with a ProvisioningFailed Event; WaitForFirstConsumer claims are provisioned
once the scheduler names a node (`volume.kubernetes.io/selected-node`). The provisioned PV is
a `hostPath` (DirectoryOrCreate) under the directory the node advertises in its annotation
`knet.io/local-path-root`, pinned there by node affinity. Manually made PVs bind too (class,
size and access modes must fit). Deleting a directory is done by a helper pod on its node,
like rancher's local-path-provisioner. Claim/volume arithmetic is in `pvbinding.py`.
"""

from __future__ import annotations

import asyncio

from control.clientbase import Client, Obj
from control.clock import Clock
from control.controllers import pvbinding as b
from control.controllers.base import Controller, Requeue
from control.controllers.events import EventRecorder
from control.controllers.util import deep, is_terminating, meta
from control.errors import AlreadyExists, Conflict, NotFound
from control.informer import Informer, object_key

__all__ = ["PersistentVolumeController"]


class PersistentVolumeController(Controller):
    name = "persistentvolume-binder"

    def __init__(self, client: Client, *, clock: Clock, recorder: EventRecorder,
                 claims: Informer, volumes: Informer, classes: Informer, nodes: Informer,
                 pods: Informer, workers: int = 2,
                 provisioner: EventRecorder | None = None) -> None:
        super().__init__(client, clock=clock, workers=workers)
        self.recorder = recorder
        self.provisioner = provisioner or recorder     # the local-path provisioner's voice
        self.claims, self.volumes, self.classes = claims, volumes, classes
        self.nodes, self.pods = nodes, pods
        self._said: dict[str, str] = {}        # claim key -> last reason told (no repeats)
        claims.add_handler(on_add=self._claim, on_update=lambda _o, n: self._claim(n),
                           on_delete=self._claim_deleted)
        volumes.add_handler(on_add=self._volume, on_update=lambda _o, n: self._volume(n),
                            on_delete=self._volume)
        classes.add_handler(on_add=lambda _c: self._all_pending(),
                            on_update=lambda _o, _n: self._all_pending())
        pods.add_handler(on_update=lambda _o, n: self._helper(n))

    def _claim(self, pvc: Obj) -> None:
        self.enqueue(object_key(pvc))

    def _claim_deleted(self, pvc: Obj) -> None:
        self._said.pop(object_key(pvc), None)
        name = (pvc.get("spec") or {}).get("volumeName")
        if name:
            self.enqueue(f"/{name}")

    def _volume(self, pv: Obj) -> None:
        self.enqueue(f"/{meta(pv)['name']}")
        ref = (pv.get("spec") or {}).get("claimRef") or {}
        if ref.get("name"):
            self.enqueue(f"{ref.get('namespace')}/{ref['name']}")
        else:                           # a free volume: pending claims may fit it now
            self._all_pending()

    def _all_pending(self) -> None:
        for pvc in self.claims.list():
            if (pvc.get("status") or {}).get("phase") != "Bound":
                self.enqueue(object_key(pvc))

    def _helper(self, pod: Obj) -> None:
        pv = (meta(pod).get("labels") or {}).get(b.HELPER_LABEL)
        if pv:
            self.enqueue(f"/{pv}")

    async def run(self, stop: asyncio.Event) -> None:
        await b.ensure_default_class(self.client, self.log)
        await super().run(stop)

    async def reconcile(self, key: str) -> None:
        if key.startswith("/"):
            pv = self.volumes.get(key[1:])
            if pv is not None:
                await self._sync_volume(deep(pv))
            return
        pvc = self.claims.get(key)
        if pvc is not None and not is_terminating(pvc):
            await self._sync_claim(deep(pvc))

    # ---- claims ------------------------------------------------------------------------------

    async def _tell(self, pvc: Obj, type_: str, reason: str, message: str, *,
                    by_provisioner: bool = False) -> None:
        key = object_key(pvc)
        if self._said.get(key) == f"{reason}:{message}":
            return
        self._said[key] = f"{reason}:{message}"
        recorder = self.provisioner if by_provisioner else self.recorder
        await recorder.record(pvc, type_, reason, message)  # type: ignore[arg-type]

    async def _sync_claim(self, pvc: Obj) -> None:
        spec, status = pvc.get("spec") or {}, pvc.get("status") or {}
        if spec.get("volumeName"):
            pv = self.volumes.get(spec["volumeName"])
            if pv is None:
                if status.get("phase") == "Bound":
                    await self._claim_phase(pvc, "Lost", None)
                    await self._tell(pvc, "Warning", "ClaimLost",
                                     "Bound claim has lost its PersistentVolume. Data on the "
                                     "volume is lost!")
                return
            await self._finish_bind(pvc, pv)
            return
        if spec.get("storageClassName") is None:
            default = b.default_class(self.classes.list())
            if default is not None:
                await self._patch_claim(pvc, {"spec": {"storageClassName":
                                                       meta(default)["name"]}})
                return
        pv = b.find_volume(pvc, self.volumes.list())
        if pv is not None:
            await self._bind(pvc, pv)
            return
        class_name = spec.get("storageClassName") or ""
        if not class_name:
            await self._tell(pvc, "Normal", "FailedBinding",
                             "no persistent volumes available for this claim and no storage "
                             "class is set")
            return
        sc = self.classes.get(class_name)
        if sc is None:
            await self._tell(pvc, "Warning", "ProvisioningFailed",
                             f'storageclass.storage.k8s.io "{class_name}" not found')
            return
        node = (meta(pvc).get("annotations") or {}).get(b.SELECTED_NODE)
        if not node:
            if sc.get("volumeBindingMode") == "WaitForFirstConsumer":
                await self._tell(pvc, "Normal", "WaitForFirstConsumer",
                                 "waiting for first consumer to be created before binding")
            else:
                await self._tell(pvc, "Warning", "ProvisioningFailed",
                                 f"failed to provision volume with StorageClass "
                                 f'"{class_name}": configuration error, no node was '
                                 "specified")
            return
        await self._provision(pvc, sc, node)

    async def _provision(self, pvc: Obj, sc: Obj, node_name: str) -> None:
        await self._tell(pvc, "Normal", "ExternalProvisioning",
                         "Waiting for a volume to be created either by the external "
                         f"provisioner '{sc.get('provisioner')}' or manually by the "
                         "system administrator. If volume creation is delayed, please "
                         "verify that the provisioner is running and correctly registered.")
        if sc.get("provisioner") != b.PROVISIONER:
            return
        node = self.nodes.get(node_name)
        root = (meta(node or {}).get("annotations") or {}).get(b.ROOT_ANNOTATION)
        if not root:
            await self._tell(pvc, "Warning", "ProvisioningFailed",
                             f"failed to provision volume with StorageClass "
                             f'"{meta(sc)["name"]}": node "{node_name}" has no local path '
                             f"(annotation {b.ROOT_ANNOTATION}); is its knet agent running?")
            raise Requeue(5.0)
        pv = b.new_volume(pvc, sc, node_name, root)
        await self._tell(pvc, "Normal", "Provisioning",
                         f'External provisioner is provisioning volume for claim '
                         f'"{object_key(pvc)}"', by_provisioner=True)
        try:
            pv = await self.client.create("persistentvolumes", pv)
        except AlreadyExists:
            pv = await self.client.get("persistentvolumes", meta(pv)["name"])
        await self._tell(pvc, "Normal", "ProvisioningSucceeded",
                         f"Successfully provisioned volume {meta(pv)['name']}",
                         by_provisioner=True)
        await self._bind(pvc, pv)

    async def _bind(self, pvc: Obj, pv: Obj) -> None:
        """claimRef on the volume first (it reserves it), then volumeName on the claim."""
        if not b.claims_match(pv, pvc):
            pv_body = deep(pv)
            pv_body["spec"]["claimRef"] = b.claim_ref(pvc)
            try:
                pv = await self.client.update("persistentvolumes", pv_body)
            except (Conflict, NotFound):
                raise Requeue(0.2) from None
        pvc = await self._patch_claim(pvc, {"metadata": {"annotations": {
            b.BIND_COMPLETED: "yes", b.BOUND_BY_CONTROLLER: "yes"}},
            "spec": {"volumeName": meta(pv)["name"]}}) or pvc
        await self._finish_bind(pvc, pv)

    async def _finish_bind(self, pvc: Obj, pv: Obj) -> None:
        if (pv.get("status") or {}).get("phase") != "Bound":
            await self._volume_phase(pv, "Bound")
        await self._claim_phase(pvc, "Bound", pv)

    async def _patch_claim(self, pvc: Obj, patch: Obj) -> Obj | None:
        m = meta(pvc)
        try:
            return await self.client.patch("persistentvolumeclaims", m["name"], patch,
                                           namespace=m["namespace"])
        except NotFound:
            return None

    async def _claim_phase(self, pvc: Obj, phase: str, pv: Obj | None) -> None:
        status = dict(pvc.get("status") or {})
        want: Obj = {"phase": phase}
        if pv is not None:
            want["accessModes"] = (pv.get("spec") or {}).get("accessModes") or []
            want["capacity"] = (pv.get("spec") or {}).get("capacity") or {}
        if all(status.get(k) == v for k, v in want.items()):
            return
        status.update(want)
        m = meta(pvc)
        try:
            await self.client.patch("persistentvolumeclaims", m["name"], {"status": status},
                                    namespace=m["namespace"], subresource="status")
        except NotFound:
            pass

    # ---- volumes -----------------------------------------------------------------------------

    async def _volume_phase(self, pv: Obj, phase: str, message: str = "") -> None:
        status = pv.get("status") or {}
        if status.get("phase") == phase and status.get("message", "") == message:
            return
        body: Obj = {"phase": phase}
        body["message"] = message or None
        try:
            await self.client.patch("persistentvolumes", meta(pv)["name"], {"status": body},
                                    subresource="status")
        except NotFound:
            pass

    async def _sync_volume(self, pv: Obj) -> None:
        if is_terminating(pv):
            return
        ref = (pv.get("spec") or {}).get("claimRef") or {}
        phase = (pv.get("status") or {}).get("phase")
        if not ref.get("name"):
            if phase != "Available":
                await self._volume_phase(pv, "Available")
            return
        pvc = self.claims.get(f"{ref.get('namespace')}/{ref['name']}")
        if pvc is not None and (not ref.get("uid") or meta(pvc).get("uid") == ref.get("uid")):
            if phase != "Bound" and (pvc.get("spec") or {}).get("volumeName") == \
                    meta(pv)["name"]:
                await self._volume_phase(pv, "Bound")
            elif phase != "Bound":
                self.enqueue(object_key(pvc))
            return
        if pvc is None and phase in (None, "Pending", "Available") and not ref.get("uid"):
            return                      # pre-bound to a claim not made yet
        if phase != "Released" and phase != "Failed":
            await self._volume_phase(pv, "Released")
        policy = (pv.get("spec") or {}).get("persistentVolumeReclaimPolicy", "Retain")
        if policy == "Delete":
            await self._reclaim_delete(pv)

    async def _reclaim_delete(self, pv: Obj) -> None:
        name = meta(pv)["name"]
        if (meta(pv).get("annotations") or {}).get(b.PROVISIONED_BY) != b.PROVISIONER:
            await self.client.delete("persistentvolumes", name)
            return
        helper = self.pods.get(f"{b.HELPER_NAMESPACE}/{b.helper_name(pv)}")
        if helper is None:
            pod = b.helper_pod(pv)
            if pod is None:             # no node or path recorded: nothing to remove
                await self._delete_volume(pv)
                return
            try:
                await self.client.create("pods", pod, namespace=b.HELPER_NAMESPACE)
            except AlreadyExists:
                pass
            return
        phase = (helper.get("status") or {}).get("phase")
        if phase == "Succeeded":
            await self._delete_volume(pv)
            await self._delete_helper(helper)
        elif phase == "Failed":
            await self._volume_phase(pv, "Failed", "failed to delete volume: the helper pod "
                                     f"{meta(helper)['name']} failed; see its logs")
            await self.recorder.record(pv, "Warning", "VolumeFailedDelete",
                                       f"helper pod {meta(helper)['name']} failed")
            await self._delete_helper(helper)
            raise Requeue(10.0)

    async def _delete_volume(self, pv: Obj) -> None:
        try:
            await self.client.delete("persistentvolumes", meta(pv)["name"])
            self.log.info("/%s: deleted (reclaim policy Delete)", meta(pv)["name"])
        except NotFound:
            pass

    async def _delete_helper(self, helper: Obj) -> None:
        try:
            await self.client.delete("pods", meta(helper)["name"],
                                     namespace=b.HELPER_NAMESPACE)
        except NotFound:
            pass
