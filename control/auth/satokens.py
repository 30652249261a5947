"""Service-account tokens: JWTs in Kubernetes' bound-token shape, issued and verified.

`TokenIssuer` signs the claims kube-apiserver's TokenRequest puts in a token (iss, sub, aud,
exp, iat, nbf, jti and the private `kubernetes.io` claim naming the namespace, the
ServiceAccount and the Pod, Secret or Node it is bound to). `ServiceAccountTokens` is the
Authenticator: signature, issuer, time, audience, then the objects the token names must still
exist with the same uid (a pod-bound token dies with its pod), as kube-apiserver's
serviceaccount token validator checks. Time comes from a `now` callable so tests drive it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import jwt

from control.auth.sakey import ALGORITHM, SigningKey
from control.auth.types import AUTHENTICATED, UserInfo
from control.errors import NotFound, Unauthorized

__all__ = ["ISSUER", "Bound", "ObjectGetter", "ServiceAccountTokens", "TokenIssuer",
           "service_account_user"]

log = logging.getLogger(__name__)

ISSUER = "https://kubernetes.default.svc.cluster.local"
SA_PREFIX = "system:serviceaccount:"
SA_GROUP = "system:serviceaccounts"
POD_NAME, POD_UID = "authentication.kubernetes.io/pod-name", "authentication.kubernetes.io/pod-uid"
NODE_NAME = "authentication.kubernetes.io/node-name"
NODE_UID = "authentication.kubernetes.io/node-uid"
CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"
DELETION_LEEWAY = 60.0      # a token of an object deleted longer ago than this is invalid

Obj = dict[str, Any]
Now = Callable[[], datetime]


class ObjectGetter(Protocol):
    """Reads objects by name; raises control.errors.NotFound (ObjectService fits)."""

    async def get(self, resource: str, name: str, *, namespace: str | None = None) -> Obj: ...


@dataclass(frozen=True)
class Bound:
    """What a token is bound to: a Pod, Secret or Node, by name and uid."""
    kind: str
    name: str
    uid: str


def service_account_user(namespace: str, name: str, uid: str = "",
                         extra: dict[str, tuple[str, ...]] | None = None) -> UserInfo:
    return UserInfo(f"{SA_PREFIX}{namespace}:{name}", uid=uid,
                    groups=(SA_GROUP, f"{SA_GROUP}:{namespace}", AUTHENTICATED),
                    extra=extra or {})


def _ref(obj: Bound) -> dict[str, str]:
    return {"name": obj.name, "uid": obj.uid}


class TokenIssuer:
    def __init__(self, key: SigningKey, *, now: Now, issuer: str = ISSUER) -> None:
        self.key = key
        self.now = now
        self.issuer = issuer

    def issue(self, *, namespace: str, name: str, uid: str, audiences: Sequence[str],
              seconds: int, bound: Bound | None = None,
              node: Bound | None = None) -> tuple[str, datetime]:
        """A signed token for ServiceAccount NAMESPACE/NAME and its expiry time."""
        now = int(self.now().timestamp())
        private: dict[str, Any] = {"namespace": namespace,
                                   "serviceaccount": {"name": name, "uid": uid}}
        if bound is not None:
            private[bound.kind.lower()] = _ref(bound)
        if node is not None and (bound is None or bound.kind != "Node"):
            private["node"] = _ref(node)
        claims = {"aud": list(audiences), "exp": now + seconds, "iat": now, "nbf": now,
                  "iss": self.issuer, "jti": str(uuid.uuid4()), "kubernetes.io": private,
                  "sub": f"{SA_PREFIX}{namespace}:{name}"}
        token = jwt.encode(claims, self.key.private, algorithm=ALGORITHM,
                           headers={"kid": self.key.kid})
        return token, datetime.fromtimestamp(now + seconds, UTC)


def _invalid(why: str) -> Unauthorized:
    return Unauthorized(f"invalid bearer token, {why}")


class ServiceAccountTokens:
    """The Authenticator of service-account tokens (this issuer's only; others: None)."""

    def __init__(self, key: SigningKey, objects: ObjectGetter, *, audiences: Sequence[str],
                 now: Now, issuer: str = ISSUER) -> None:
        self.key = key
        self.objects = objects
        self.audiences = list(audiences)
        self.now = now
        self.issuer = issuer

    async def authenticate(self, token: str) -> UserInfo | None:
        """The token's user; None (a 401, whose reason the caller is not told, as
        kube-apiserver does) for a token that is not valid."""
        try:
            found = await self.review(token, self.audiences)
        except Unauthorized as exc:
            log.info("service-account token rejected: %s", exc.message)
            return None
        return None if found is None else found[0]

    async def review(self, token: str,
                     audiences: Sequence[str]) -> tuple[UserInfo, list[str]] | None:
        """The user and the audiences (of `audiences`) the token is good for; None if the
        token is not one of this issuer's; Unauthorized if it is but is not valid."""
        claims = self._claims(token)
        if claims is None:
            return None
        now = self.now().timestamp()
        if now >= float(claims.get("exp", 0)):
            raise _invalid("service account token has expired")
        if now < float(claims.get("nbf", 0)):
            raise _invalid("service account token is not valid yet")
        aud = claims.get("aud") or []
        aud = [aud] if isinstance(aud, str) else list(aud)
        good = [a for a in audiences if a in aud]
        if not good:
            raise _invalid(f"token audiences {aud!r} is invalid for the target audiences "
                           f"{list(audiences)!r}")
        return await self._user(claims), good

    def _claims(self, token: str) -> dict[str, Any] | None:
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return None
        if unverified.get("iss") != self.issuer:
            return None
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self.key.public, algorithms=[ALGORITHM],
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                         "verify_aud": False, "require": ["exp", "sub", "iss"]})
        except jwt.PyJWTError as exc:
            raise _invalid(f"the token's signature or shape is not valid ({exc})") from None
        if not isinstance(claims.get("kubernetes.io"), dict):
            raise _invalid("the token has no kubernetes.io claim; it is no service-account "
                           "token of this cluster")
        return claims

    async def _user(self, claims: dict[str, Any]) -> UserInfo:
        private = claims["kubernetes.io"]
        namespace = str(private.get("namespace", ""))
        sa = private.get("serviceaccount") or {}
        account = await self._live("serviceaccounts", namespace, sa, "service account")
        extra: dict[str, tuple[str, ...]] = {}
        pod = private.get("pod")
        if pod:
            await self._live("pods", namespace, pod, "pod")
            extra[POD_NAME], extra[POD_UID] = (str(pod["name"]),), (str(pod["uid"]),)
        secret = private.get("secret")
        if secret:
            await self._live("secrets", namespace, secret, "secret")
        node = private.get("node")
        if node:
            if not pod:             # a token bound to the node itself
                await self._live("nodes", None, node, "node")
            extra[NODE_NAME], extra[NODE_UID] = (str(node["name"]),), (str(node["uid"]),)
        if claims.get("jti"):
            extra[CREDENTIAL_ID] = (f"JTI={claims['jti']}",)
        return service_account_user(namespace, str(sa.get("name", "")),
                                    str(account["metadata"].get("uid", "")), extra)

    async def _live(self, resource: str, namespace: str | None, ref: dict[str, Any],
                    what: str) -> Obj:
        name = str(ref.get("name", ""))
        try:
            obj = await self.objects.get(resource, name, namespace=namespace)
        except NotFound:
            raise _invalid(f'{resource} "{name}" not found: the token has been invalidated'
                           ) from None
        md = obj["metadata"]
        if str(md.get("uid", "")) != str(ref.get("uid", "")):
            raise _invalid(f"{what} UID ({md.get('uid')}) does not match claim "
                           f"({ref.get('uid')}): the token has been invalidated")
        deleted = md.get("deletionTimestamp")
        if deleted:
            when = datetime.fromisoformat(str(deleted)).timestamp()
            if when < self.now().timestamp() - DELETION_LEEWAY:
                raise _invalid(f"{what} {name} is being deleted: the token has been "
                               "invalidated")
        return obj
