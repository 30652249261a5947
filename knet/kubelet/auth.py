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

`KubeletAuth.for_node` is what the agent runs: x509, then tokens through the API server's
TokenReview; the API server's kubelet client and group system:masters allowed at once, others
asked of the API server by SubjectAccessReview (`nodes/proxy` on this node...), whose answers
are kept as the kubelet's webhook authorizer keeps them (--authorization-webhook-cache-
authorized-ttl 5m, -unauthorized-ttl 30s; an unanswered review is not kept). While the API
server does not serve a review, its answer is "no": tokens are refused and only
system:masters passes (`MastersOnly`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Middleware

from control.api.ca import APISERVER_KUBELET_CLIENT, SYSTEM_MASTERS, peer_identity
from control.auth.types import (
    AUTHENTICATED,
    Attributes,
    Authenticator,
    Authorizer,
    Decision,
    FirstAuthorizer,
    UserInfo,
    Verdict,
)
from control.clientbase import Client
from control.errors import ApiError

log = logging.getLogger(__name__)

__all__ = ["KubeletAuth", "MastersOnly", "SubjectAccessReviews", "TokenReviews", "middleware",
           "request_attributes"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# kubelet pkg/server/auth.go GetRequestAttributes: verb by method, subresource by path prefix
_VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch",
          "DELETE": "delete"}
_SUBRESOURCES = (("/stats", "stats"), ("/metrics", "metrics"), ("/logs/", "log"),
                 ("/spec/", "spec"), ("/checkpoint/", "checkpoint"), ("/pods", "pods"),
                 ("/configz", "configz"), ("/healthz", "healthz"))


class MastersOnly:
    """Allows the API server's kubelet client and group system:masters; the rest is denied
    (or, with `others=NO_OPINION`, left to the next authorizer)."""

    def __init__(self, others: Verdict = Verdict.DENY) -> None:
        self.others = others

    async def authorize(self, attrs: Attributes) -> Decision:
        user = attrs.user
        if SYSTEM_MASTERS in user.groups or user.name == APISERVER_KUBELET_CLIENT:
            return Decision(Verdict.ALLOW)
        return Decision(self.others, f"{user.name} is not allowed to use the kubelet API")


class TokenReviews:
    """Bearer tokens checked by the API server (authentication.k8s.io/v1 TokenReview), as
    the kubelet's --authentication-token-webhook. Not served (yet): no token is known."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def authenticate(self, token: str) -> UserInfo | None:
        try:
            review = await self.client.create("tokenreviews", {
                "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "spec": {"token": token}})
        except (ApiError, KeyError, OSError) as exc:
            log.info("kubelet API: TokenReview unavailable (%s); the token is refused", exc)
            return None
        status = review.get("status") or {}
        user = status.get("user") or {}
        if not status.get("authenticated") or not user.get("username"):
            return None
        return UserInfo(str(user["username"]), uid=str(user.get("uid", "")),
                        groups=tuple(user.get("groups") or ()),
                        extra={k: tuple(v) for k, v in (user.get("extra") or {}).items()})


class SubjectAccessReviews:
    """Each request asked of the API server (authorization.k8s.io/v1 SubjectAccessReview
    on nodes/SUBRESOURCE of this node), as the kubelet's --authorization-mode=Webhook, the
    answer kept `allowed_ttl` s if allowed, `denied_ttl` s if not (per user, groups, extra,
    verb and subresource; at most `max_entries`, the oldest dropped first). Not served
    (yet), or an error: denied, and asked again next time."""

    def __init__(self, client: Client, node: str, *, allowed_ttl: float = 300.0,
                 denied_ttl: float = 30.0, max_entries: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client, self.node = client, node
        self.allowed_ttl, self.denied_ttl = allowed_ttl, denied_ttl
        self.max_entries, self.clock = max_entries, clock
        self._cache: dict[str, tuple[float, Decision]] = {}

    def __repr__(self) -> str:
        return f"<SubjectAccessReviews node={self.node} cached={len(self._cache)}>"

    async def authorize(self, attrs: Attributes) -> Decision:
        spec = self._spec(attrs)
        key = json.dumps(spec, sort_keys=True)
        now = self.clock()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        decision, answered = await self._review(spec)
        if answered:
            self._cache.pop(key, None)
            while len(self._cache) >= self.max_entries:
                del self._cache[next(iter(self._cache))]
            ttl = self.allowed_ttl if decision.allowed else self.denied_ttl
            self._cache[key] = (now + ttl, decision)
        return decision

    def _spec(self, attrs: Attributes) -> dict[str, object]:
        user = attrs.user
        spec: dict[str, object] = {
            "user": user.name, "groups": list(user.groups),
            "resourceAttributes": {"verb": attrs.verb, "resource": "nodes",
                                   "subresource": attrs.subresource, "name": self.node}}
        if user.uid:
            spec["uid"] = user.uid
        if user.extra:
            spec["extra"] = {k: list(v) for k, v in user.extra.items()}
        return spec

    async def _review(self, spec: dict[str, object]) -> tuple[Decision, bool]:
        """The API server's answer, and whether it answered (False: unavailable)."""
        try:
            review = await self.client.create("subjectaccessreviews", {
                "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                "spec": spec})
        except (ApiError, KeyError, OSError) as exc:
            return Decision(Verdict.DENY, f"SubjectAccessReview unavailable: {exc}"), False
        status = review.get("status") or {}
        reason = str(status.get("reason") or status.get("evaluationError") or "")
        return Decision(Verdict.ALLOW if status.get("allowed") else Verdict.DENY, reason), True


@dataclass
class KubeletAuth:
    """What the kubelet checks each request with."""
    authz: Authorizer = field(default_factory=MastersOnly)
    tokens: Authenticator | None = None     # None: bearer tokens are refused

    @classmethod
    def for_node(cls, client: Client, node: str) -> KubeletAuth:
        """x509 + TokenReview; masters at once, the rest by SubjectAccessReview."""
        return cls(authz=FirstAuthorizer([MastersOnly(others=Verdict.NO_OPINION),
                                          SubjectAccessReviews(client, node)]),
                   tokens=TokenReviews(client))


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
