"""Request paths to authorization `Attributes`, as k8s.io/apiserver's RequestInfoFactory reads them.

    /api/v1/namespaces/NS/pods/NAME/log   -> get pods/log NAME in NS, group ""
    /apis/apps/v1/deployments?watch=true  -> watch deployments (all namespaces)
    /version                              -> non-resource get /version

and the 403 message kube-apiserver writes for a denied request.
"""

from __future__ import annotations

from collections.abc import Mapping

from control.auth.types import Attributes, UserInfo

__all__ = ["attributes", "forbidden_message"]

_NS_SUBRESOURCES = ("status", "finalize")
# a WebSocket GET to these runs commands or opens connections: authorized as create, so that
# a read-only role (get on pods/exec) does not open a shell
_CONNECT_AS_CREATE = ("exec", "attach", "portforward")
_READ = {"GET": "get", "HEAD": "get"}
_WRITE = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def attributes(user: UserInfo, method: str, path: str,
               query: Mapping[str, str]) -> Attributes:
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return Attributes(user=user, verb=method.lower(), resource_request=False, path=path)
    if not rest:
        return Attributes(user=user, verb=method.lower(), resource_request=False, path=path)
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3 and (group or rest[2] not in _NS_SUBRESOURCES):
        namespace, rest = rest[1], rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""      # services/NAME/proxy/a/b: subresource proxy
    if resource == "namespaces" and name and not namespace:
        namespace = name             # a namespace is its own namespace (RequestInfoFactory)
    verb = _verb(method, name, query)
    if verb == "get" and not group and resource == "pods" and sub in _CONNECT_AS_CREATE:
        verb = "create"   # kube 1.31+ (AuthorizePodWebsocketUpgradeCreatePermission)
    return Attributes(user=user, verb=verb, api_group=group, api_version=version,
                      resource=resource, subresource=sub, namespace=namespace, name=name,
                      path=path)


def _verb(method: str, name: str, query: Mapping[str, str]) -> str:
    if method in _READ:
        if query.get("watch", "").lower() in ("1", "true"):
            return "watch"
        return "get" if name else "list"
    if method == "DELETE" and not name:
        return "deletecollection"
    return _WRITE.get(method, method.lower())


def forbidden_message(attrs: Attributes, reason: str = "") -> str:
    """kube-apiserver's words: `pods is forbidden: User "u" cannot create resource "pods"
    in API group "" in the namespace "kube-system"`; `pods "x" is forbidden: ... cannot create
    resource "pods/exec" ...` for a subresource."""
    who = f'User "{attrs.user.name}"'
    if not attrs.resource_request:
        msg = f'forbidden: {who} cannot {attrs.verb} path "{attrs.path}"'
    else:
        resource = attrs.resource + (f"/{attrs.subresource}" if attrs.subresource else "")
        # the subject is the GroupResource without the subresource: `pods "x"` for pods/exec,
        # `deployments.apps "web"` (apierrors.NewForbidden)
        qualified = attrs.resource + (f".{attrs.api_group}" if attrs.api_group else "")
        subject = f'{qualified} "{attrs.name}"' if attrs.name else qualified
        msg = (f'{subject} is forbidden: {who} cannot {attrs.verb} resource "{resource}" '
               f'in API group "{attrs.api_group}"')
        msg += (f' in the namespace "{attrs.namespace}"' if attrs.namespace
                else " at the cluster scope")
    return msg + (f": {reason}" if reason else "")
