"""The `token` subresource of ServiceAccounts: POST .../serviceaccounts/NAME/token takes an
authentication.k8s.io/v1 TokenRequest and answers it with a signed, expiring token in
`status.token` (201), as kube-apiserver's TokenREST does: audiences default to the API
server's, expirationSeconds to 3600 (at least 600), and a `boundObjectRef` (Pod, Secret or
Node) ties the token's life to that object (a pod's token also names the pod's node).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from control.api.meta import rfc3339
from control.auth.satokens import Bound, ObjectGetter, TokenIssuer
from control.errors import BadRequest, Cause, Conflict, Invalid, NotFound

__all__ = ["DEFAULT_SECONDS", "MIN_SECONDS", "TokenRequests"]

Obj = dict[str, Any]
DEFAULT_SECONDS = 3600
MIN_SECONDS = 600
MAX_SECONDS = 1 << 32
_BINDABLE = {"Pod": ("pods", "v1"), "Secret": ("secrets", "v1"), "Node": ("nodes", "v1")}


def _invalid(name: str, field: str, value: object, why: str) -> Invalid:
    detail = f"Invalid value: {value!r}: {why}"
    return Invalid(f'TokenRequest.authentication.k8s.io "{name}" is invalid: {field}: {detail}',
                   kind="TokenRequest", group="authentication.k8s.io", name=name,
                   causes=[Cause(field, detail)])


class TokenRequests:
    def __init__(self, issuer: TokenIssuer, *, audiences: Sequence[str]) -> None:
        self.issuer = issuer
        self.audiences = list(audiences)

    async def create(self, objects: ObjectGetter, *, namespace: str, name: str,
                     body: Any) -> Obj:
        if not isinstance(body, dict):
            raise BadRequest(f"serviceaccounts/{name}/token takes a TokenRequest JSON object")
        if body.get("kind") not in (None, "TokenRequest"):
            raise BadRequest(f"serviceaccounts/{name}/token takes a TokenRequest, got a "
                             f"{body.get('kind')}")
        spec = dict(body.get("spec") or {})
        seconds = spec.get("expirationSeconds")
        seconds = DEFAULT_SECONDS if seconds is None else seconds
        if not isinstance(seconds, int) or isinstance(seconds, bool):
            raise _invalid(name, "spec.expirationSeconds", seconds, "must be an integer")
        if seconds < MIN_SECONDS:
            raise _invalid(name, "spec.expirationSeconds", seconds,
                           "may not specify a duration less than 10 minutes")
        if seconds > MAX_SECONDS:
            raise _invalid(name, "spec.expirationSeconds", seconds,
                           "may not specify a duration larger than 2^32 seconds")
        audiences = [str(a) for a in spec.get("audiences") or []] or self.audiences
        account = await objects.get("serviceaccounts", name, namespace=namespace)
        bound, node = await self._bound(objects, namespace, name, spec)
        token, expires = self.issuer.issue(
            namespace=namespace, name=name, uid=str(account["metadata"].get("uid", "")),
            audiences=audiences, seconds=seconds, bound=bound, node=node)
        spec.update(audiences=audiences, expirationSeconds=seconds)
        if bound is not None:
            spec["boundObjectRef"] = {**spec["boundObjectRef"], "uid": bound.uid}
        md = {"name": name, "namespace": namespace,
              "creationTimestamp": rfc3339(self.issuer.now())}
        return {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                "metadata": md, "spec": spec,
                "status": {"token": token, "expirationTimestamp": rfc3339(expires)}}

    @staticmethod
    async def _bound(objects: ObjectGetter, namespace: str, account: str,
                     spec: Obj) -> tuple[Bound | None, Bound | None]:
        ref = spec.get("boundObjectRef")
        if not ref:
            return None, None
        kind, ref_name = str(ref.get("kind", "")), str(ref.get("name", ""))
        if kind not in _BINDABLE or ref.get("apiVersion", "v1") not in ("v1", ""):
            raise BadRequest(f"cannot bind token to object of type {ref.get('apiVersion', '')}"
                             f", Kind={kind}; bind it to a v1 Pod, Secret or Node")
        resource, _ = _BINDABLE[kind]
        obj = await objects.get(resource, ref_name,
                                namespace=None if kind == "Node" else namespace)
        uid = str(obj["metadata"].get("uid", ""))
        if ref.get("uid") and ref["uid"] != uid:
            raise Conflict(f'Operation cannot be fulfilled on {kind} "{ref_name}": the UID in '
                           f"the bound object reference ({ref['uid']}) does not match the UID "
                           "in record. The object might have been deleted and then recreated",
                           kind=kind, name=ref_name)
        node = None
        if kind == "Pod":
            pod_sa = (obj.get("spec") or {}).get("serviceAccountName") or "default"
            if pod_sa != account:
                raise BadRequest(f'cannot bind token for serviceaccount "{account}" to pod '
                                 "running with different serviceaccount name.")
            node_name = (obj.get("spec") or {}).get("nodeName")
            if node_name:
                try:
                    node_obj = await objects.get("nodes", node_name)
                    node = Bound("Node", node_name, str(node_obj["metadata"].get("uid", "")))
                except NotFound:
                    node = None
        return Bound(kind, ref_name, uid), node
