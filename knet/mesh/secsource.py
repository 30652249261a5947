"""The node proxy's security inputs, watched: Pods (IP, node, ServiceAccount, labels),
Namespaces (the ambient label), PeerAuthentications and AuthorizationPolicies, made into one
immutable `Security` and swapped in; then the in-pod plumbing is reconciled against it.

Same rhythm as source.py (watched.WatchedSource): a change marks the source dirty, a loop
every `period` (0.25 s) rebuilds and reconciles, so an enrollment or a policy is live within a second. Certificate
renewals (at half life) are checked on the same loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from control.addresses import POD_CIDR, SERVICE_CIDR
from control.clientbase import Client, Obj
from control.models.meshsecurity import AuthorizationPolicy, PeerAuthentication
from knet.dataplane.meshredirect import NftRedirect
from knet.mesh.certs import ApiSigner, CertSigner
from knet.mesh.guard import NodeGuard, Security, Workload
from knet.mesh.table import AMBIENT_LABEL
from knet.mesh.watched import WatchedSource
from knet.mesh.ztunnel import InPodMesh, Redirect
from knet.servicesource import InformerFactory

log = logging.getLogger(__name__)

__all__ = ["SecuritySource", "attach_security", "build_security", "workload_of"]

RESOURCES = ("pods", "namespaces", "peerauthentications", "authorizationpolicies")


def workload_of(pod: Obj, namespace_labels: dict[str, dict[str, str]]) -> Workload | None:
    """A pod as the mesh sees it (None: no IP, host network, or finished)."""
    md, spec, st = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    ip = st.get("podIP")
    if not ip or spec.get("hostNetwork") or st.get("phase") in ("Succeeded", "Failed"):
        return None
    ns, labels = md.get("namespace") or "default", dict(md.get("labels") or {})
    meshed = (namespace_labels.get(ns, {}).get(AMBIENT_LABEL) == "ambient"
              and labels.get(AMBIENT_LABEL) != "none" and md.get("deletionTimestamp") is None)
    return Workload(ns, md.get("name") or "", ip, spec.get("nodeName") or "",
                    spec.get("serviceAccountName") or "default", labels, meshed)


def build_security(pods: dict[str, Obj], namespace_labels: dict[str, dict[str, str]],
                   peerauths: list[PeerAuthentication],
                   policies: list[AuthorizationPolicy]) -> Security:
    by_ip: dict[str, Workload] = {}
    for pod in pods.values():
        w = workload_of(pod, namespace_labels)
        if w is not None:
            by_ip[w.ip] = w
    return Security(by_ip, tuple(peerauths), tuple(policies))


class SecuritySource(WatchedSource):
    what = "mesh: security reconcile"

    def __init__(self, client: Client, *, informer: InformerFactory | None = None,
                 period: float = 0.25) -> None:
        self.security = Security()
        self.inpod: InPodMesh | None = None
        super().__init__(client, RESOURCES, informer=informer, period=period)

    def __repr__(self) -> str:
        return f"<SecuritySource {len(self.security.by_ip)} workloads>"

    def world(self) -> Security:
        return self.security

    def _put(self, resource: str) -> Callable[[Obj], None]:
        def on_add(obj: Obj) -> None:
            md = obj.get("metadata") or {}
            key = f"{md.get('namespace') or ''}/{md.get('name') or ''}"
            store = self.objects[resource]
            if resource == "namespaces":
                store[md.get("name") or ""] = dict(md.get("labels") or {})
            elif resource == "pods":
                store[key] = obj
            else:
                model = PeerAuthentication if resource == "peerauthentications" \
                    else AuthorizationPolicy
                try:
                    store[key] = model.model_validate(obj)
                except ValidationError as exc:
                    log.warning("mesh: %s %s ignored: %s", resource, key,
                                exc.errors()[0]["msg"])
                    store.pop(key, None)
            self._dirty = True
        return on_add

    def _drop(self, resource: str) -> Callable[[Obj], None]:
        def on_delete(obj: Obj) -> None:
            md = obj.get("metadata") or {}
            key = (md.get("name") or "") if resource == "namespaces" else \
                f"{md.get('namespace') or ''}/{md.get('name') or ''}"
            self.objects[resource].pop(key, None)
            self._dirty = True
        return on_delete

    def rebuild(self) -> Security:
        o = self.objects
        self.security = build_security(o["pods"], o["namespaces"],
                                       list(o["peerauthentications"].values()),
                                       list(o["authorizationpolicies"].values()))
        self._dirty = False
        return self.security

    async def tick(self) -> None:
        if self._dirty:
            self.rebuild()
        if self.inpod is not None:
            await self.inpod.reconcile()

    async def stop(self) -> None:
        await self.stop_watching()
        if self.inpod is not None:
            await self.inpod.stop()


def attach_security(client: Client, proxier: Any, informer: InformerFactory | None = None, *,
                    node: str, signer: CertSigner | None = None,
                    redirect: Redirect | None = None) -> SecuritySource:
    """The node proxy's hook: NodeGuard on its ClusterIP listeners, in-pod plumbing for its
    meshed pods (start/stop the returned source with the ServiceSource: `add_companion`)."""
    source = SecuritySource(client, informer=informer)
    proxier.ctx.guard = NodeGuard(source.world)
    source.inpod = InPodMesh(proxier, node=node, world=source.world,
                             signer=signer or ApiSigner(client),
                             redirect=redirect or NftRedirect(SERVICE_CIDR, pod_cidr=POD_CIDR),
                             pod_cidr=POD_CIDR)
    return source
