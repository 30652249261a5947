"""The Node authorizer (plugin/pkg/auth/authorizer/node): what a kubelet, user
`system:node:NAME` in group `system:nodes`, may do beyond what everyone may.

Its own Node (and status) and its Lease in kube-node-lease; events; status, and deletion, of
the pods bound to it (spec.nodeName == NAME); reads of the secrets, configmaps,
serviceaccounts and persistentvolumeclaims those pods reference, and tokens for their
service accounts; then the reads upstream's system:node role grants (pods, services,
endpointslices, nodes...). Anything else, or anyone else: no opinion (RBAC decides next).

Key design choice: upstream keeps a graph fed by informers; here the few graph questions
(is this pod on my node? does a pod on my node use this secret?) are asked of the object
layer when a node asks them, so requests of other users cost nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from control.auth.bootstrappolicy import node_rules
from control.auth.rbacrules import Rule
from control.auth.types import Attributes, Decision, Verdict
from control.errors import NotFound

__all__ = ["NodeAuthorizer", "PodSource", "StorePods", "referenced"]

Obj = dict[str, Any]
NODES_GROUP = "system:nodes"
NODE_PREFIX = "system:node:"
LEASE_NAMESPACE = "kube-node-lease"
_NO = Decision(Verdict.NO_OPINION)
_YES = Decision(Verdict.ALLOW)
_GRAPHED = {"secrets": "secret", "configmaps": "configmap",
            "persistentvolumeclaims": "persistentvolumeclaim", "serviceaccounts": "serviceaccount"}
_EXTRA_READS = (Rule(frozenset({"get", "list", "watch"}), frozenset({"discovery.k8s.io"}),
                     frozenset({"endpointslices"})),)


class PodSource(Protocol):
    async def pod(self, namespace: str, name: str) -> Obj | None: ...

    async def pods_on(self, node: str, namespace: str) -> list[Obj]: ...


class StorePods:
    """PodSource on the API server's object layer (an ObjectService or a Client)."""

    def __init__(self, objects: Any) -> None:
        self.objects = objects

    async def pod(self, namespace: str, name: str) -> Obj | None:
        try:
            obj: Obj = await self.objects.get("pods", name, namespace=namespace)
            return obj
        except NotFound:
            return None

    async def pods_on(self, node: str, namespace: str) -> list[Obj]:
        found = await self.objects.list("pods", namespace=namespace,
                                        field_selector=f"spec.nodeName={node}")
        return list(found.items)


def _volume_refs(vol: Obj) -> Iterator[tuple[str, str]]:
    if "secret" in vol:
        yield "secret", str((vol["secret"] or {}).get("secretName") or "")
    if "configMap" in vol:
        yield "configmap", str((vol["configMap"] or {}).get("name") or "")
    if "persistentVolumeClaim" in vol:
        yield "persistentvolumeclaim", str((vol["persistentVolumeClaim"] or {})
                                           .get("claimName") or "")
    for source in (vol.get("projected") or {}).get("sources") or []:
        if "secret" in source:
            yield "secret", str((source["secret"] or {}).get("name") or "")
        if "configMap" in source:
            yield "configmap", str((source["configMap"] or {}).get("name") or "")


def _container_refs(container: Obj) -> Iterator[tuple[str, str]]:
    for env in container.get("env") or []:
        ref = env.get("valueFrom") or {}
        if "secretKeyRef" in ref:
            yield "secret", str(ref["secretKeyRef"].get("name") or "")
        if "configMapKeyRef" in ref:
            yield "configmap", str(ref["configMapKeyRef"].get("name") or "")
    for source in container.get("envFrom") or []:
        if "secretRef" in source:
            yield "secret", str(source["secretRef"].get("name") or "")
        if "configMapRef" in source:
            yield "configmap", str(source["configMapRef"].get("name") or "")


def referenced(pod: Obj) -> set[tuple[str, str]]:
    """(kind, name) of every object `pod` needs from the API: what its node may read."""
    spec = pod.get("spec") or {}
    refs = {("serviceaccount", str(spec.get("serviceAccountName") or "default"))}
    refs.update(("secret", str(s.get("name") or "")) for s in spec.get("imagePullSecrets") or [])
    for vol in spec.get("volumes") or []:
        refs.update(_volume_refs(vol))
    for key in ("containers", "initContainers", "ephemeralContainers"):
        for container in spec.get(key) or []:
            refs.update(_container_refs(container))
    return refs


def node_name(attrs: Attributes) -> str | None:
    """NAME of a `system:node:NAME` user in group system:nodes; None for anyone else."""
    user = attrs.user
    if NODES_GROUP not in user.groups or not user.name.startswith(NODE_PREFIX):
        return None
    return user.name[len(NODE_PREFIX):]


class NodeAuthorizer:
    def __init__(self, pods: PodSource) -> None:
        self.pods = pods
        self.rules = tuple(Rule.from_wire(r) for r in node_rules()) + _EXTRA_READS

    def __repr__(self) -> str:
        return f"<NodeAuthorizer {self.pods!r}>"

    async def authorize(self, attrs: Attributes) -> Decision:
        node = node_name(attrs)
        if node is None:
            return _NO
        if not node:
            return Decision(Verdict.NO_OPINION,
                            f'unknown node for user "{attrs.user.name}"')
        if attrs.resource_request and attrs.api_group == "":
            if attrs.resource in _GRAPHED:
                return await self._graph_read(node, attrs)
            if attrs.resource == "nodes":
                return self._node(node, attrs)
            if attrs.resource == "pods":
                return await self._pod(node, attrs)
        if attrs.resource_request and attrs.api_group == "coordination.k8s.io" \
                and attrs.resource == "leases":
            return self._lease(node, attrs)
        return _YES if any(r.allows(attrs) for r in self.rules) else _NO

    async def _related(self, node: str, kind: str, attrs: Attributes) -> bool:
        for pod in await self.pods.pods_on(node, attrs.namespace):
            if (kind, attrs.name) in referenced(pod):
                return True
        return False

    async def _graph_read(self, node: str, attrs: Attributes) -> Decision:
        kind = _GRAPHED[attrs.resource]
        if kind == "serviceaccount" and attrs.subresource == "token":
            if attrs.verb != "create" or not attrs.name:
                return Decision(Verdict.NO_OPINION,
                                "can only create tokens for individual service accounts")
        elif attrs.subresource == "status" and kind == "persistentvolumeclaim":
            if attrs.verb not in ("get", "update", "patch"):
                return Decision(Verdict.NO_OPINION, "can only get or update "
                                "persistentvolumeclaim status")
        elif attrs.subresource or attrs.verb not in ("get", "list", "watch"):
            return Decision(Verdict.NO_OPINION, "can only read resources of this type")
        elif not attrs.name:
            return Decision(Verdict.NO_OPINION, "can only read individual objects of this type")
        if await self._related(node, kind, attrs):
            return _YES
        return Decision(Verdict.NO_OPINION, f"no relationship found between node '{node}' "
                        f"and this object")

    def _node(self, node: str, attrs: Attributes) -> Decision:
        if attrs.verb in ("get", "list", "watch", "create") and not attrs.subresource:
            return _YES
        if attrs.verb in ("update", "patch") and attrs.subresource in ("", "status"):
            if attrs.name == node:
                return _YES
            return Decision(Verdict.NO_OPINION, f"node '{node}' can only update its own Node")
        return _NO

    async def _pod(self, node: str, attrs: Attributes) -> Decision:
        if attrs.verb in ("get", "list", "watch") and attrs.subresource in ("", "status"):
            return _YES
        bound = attrs.verb in ("update", "patch") and attrs.subresource == "status" \
            or attrs.verb == "delete" and not attrs.subresource \
            or attrs.verb == "create" and attrs.subresource == "eviction"
        if not bound or not attrs.name:
            return _NO
        pod = await self.pods.pod(attrs.namespace, attrs.name)
        if pod is not None and (pod.get("spec") or {}).get("nodeName") == node:
            return _YES
        return Decision(Verdict.NO_OPINION, f"node '{node}' can only change pods bound to it")

    def _lease(self, node: str, attrs: Attributes) -> Decision:
        if attrs.verb not in ("get", "create", "update", "patch", "delete"):
            return Decision(Verdict.NO_OPINION,
                            "can only get, create, update, patch, or delete a node lease")
        if attrs.namespace != LEASE_NAMESPACE:
            return Decision(Verdict.NO_OPINION,
                            f"can only access leases in the {LEASE_NAMESPACE} namespace")
        if attrs.verb != "create" and attrs.name != node:
            return Decision(Verdict.NO_OPINION, "can only access node lease with the same "
                            "name as the requesting node")
        return _YES
