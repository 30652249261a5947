"""The kubelet API's authentication and authorization, as the real kubelet runs it with
`--anonymous-auth=false --client-ca-file=CA --authentication-token-webhook
--authorization-mode=Webhook`.

Every request is authenticated: a client certificate the TLS layer verified against the
cluster CA (user = CN, groups = O) or a bearer token checked by a `control.auth.types.
Authenticator` (a TokenReview-backed one plugs in there; none = tokens are refused). No
identity: 401 `Unauthorized`. Then the request is mapped to kubelet attributes (verb from the
HTTP method, resource `nodes`, subresource from the path: everything knet serves is `proxy`)
and authorized by a `control.auth.types.Authorizer`; not allowed: 403 with the kubelet's
words, `Forbidden (user=..., verb=..., resource=nodes, subresource=proxy)`.

Until SubjectAccessReview exists, `MastersOnly` is the authorizer: the API server's kubelet
client and the system:masters group are allowed, everyone else is denied.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Middleware

from control.api.ca import APISERVER_KUBELET_CLIENT, SYSTEM_MASTERS, peer_identity
from control.auth.types import (AUTHENTICATED, Attributes, Authenticator, Authorizer, Decision,
                                UserInfo, Verdict)

log = logging.getLogger(__name__)

__all__ = ["KubeletAuth", "MastersOnly", "middleware", "request_attributes"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# kubelet pkg/server/auth.go GetRequestAttributes: verb by method, subresource by path prefix
_VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch",
          "DELETE": "delete"}
_SUBRESOURCES = (("/stats", "stats"), ("/metrics", "metrics"), ("/logs/", "log"),
                 ("/spec/", "spec"), ("/checkpoint/", "checkpoint"), ("/pods", "pods"),
                 ("/configz", "configz"), ("/healthz", "healthz"))


class MastersOnly:
    """Allows the API server's kubelet client and group system:masters; denies the rest
    (the stand-in for the kubelet's SubjectAccessReview webhook)."""

    async def authorize(self, attrs: Attributes) -> Decision:
        user = attrs.user
        if SYSTEM_MASTERS in user.groups or user.name == APISERVER_KUBELET_CLIENT:
            return Decision(Verdict.ALLOW)
        return Decision(Verdict.DENY, f"{user.name} is not allowed to use the kubelet API")


@dataclass
class KubeletAuth:
    """What the kubelet checks each request with."""
    authz: Authorizer = field(default_factory=MastersOnly)
    tokens: Authenticator | None = None     # TokenReview-backed when the API server has it


def request_attributes(user: UserInfo, method: str, path: str) -> Attributes:
    sub = next((name for prefix, name in _SUBRESOURCES if path.startswith(prefix)), "proxy")
    return Attributes(user=user, verb=_VERBS.get(method.upper(), ""), resource="nodes",
                      subresource=sub, path=path)


async def authenticate(request: web.Request, auth: KubeletAuth) -> UserInfo | None:
    ident = peer_identity(request.transport.get_extra_info("peercert")
                          if request.transport is not None else None)
    if ident is not None:
        return UserInfo(ident.user, groups=(*ident.groups, AUTHENTICATED))
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip() and auth.tokens is not None:
        try:
            return await auth.tokens.authenticate(token.strip())
        except Exception as exc:  # noqa: BLE001 - a bad token is an unauthenticated request
            log.info("kubelet API: bearer token refused: %s", exc)
    return None


def middleware(auth: KubeletAuth) -> Middleware:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        user = await authenticate(request, auth)
        if user is None:
            return web.Response(status=401, text="Unauthorized")
        attrs = request_attributes(user, request.method, request.path)
        decision = await auth.authz.authorize(attrs)
        if not decision.allowed:
            msg = (f"Forbidden (user={user.name}, verb={attrs.verb}, resource={attrs.resource}, "
                   f"subresource={attrs.subresource})")
            log.info("kubelet API: %s %s: %s (%s)", request.method, request.path, msg,
                     decision.reason)
            return web.Response(status=403, text=msg)
        return await handler(request)

    return check
