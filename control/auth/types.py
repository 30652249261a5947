"""The authentication/authorization seam, shaped like k8s.io/apiserver's `user.Info`,
`authorizer.Attributes` and `authorizer.Decision`.

Authenticators and authorizers are Protocols so that the real ones (tokens, RBAC, the node
authorizer) and the test fakes are interchangeable; `union` chains run the first that has an
opinion, as kube-apiserver's unions do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

__all__ = [
    "ALLOW_ALL",
    "ANONYMOUS",
    "AllowAll",
    "Attributes",
    "Authenticator",
    "Authorizer",
    "Decision",
    "FirstAuthenticator",
    "FirstAuthorizer",
    "UserInfo",
    "Verdict",
]

# Well-known users and groups (k8s.io/apiserver/pkg/authentication/user)
SYSTEM_MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS_USER = "system:anonymous"


@dataclass(frozen=True)
class UserInfo:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """As `authentication.k8s.io/v1` UserInfo (TokenReview, SelfSubjectReview)."""
        out: dict[str, object] = {"username": self.name}
        if self.uid:
            out["uid"] = self.uid
        if self.groups:
            out["groups"] = list(self.groups)
        if self.extra:
            out["extra"] = {k: list(v) for k, v in self.extra.items()}
        return out


ANONYMOUS = UserInfo(ANONYMOUS_USER, groups=(UNAUTHENTICATED,))


@dataclass(frozen=True)
class Attributes:
    """One request, as an authorizer sees it (authorizer.AttributesRecord).

    Resource requests set `resource` (plural) and `verb` in Kubernetes' vocabulary (get,
    list, watch, create, update, patch, delete, deletecollection, plus impersonate, bind,
    escalate, use); non-resource requests set `path` and an HTTP-derived verb."""
    user: UserInfo
    verb: str
    resource_request: bool = True
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""


class Verdict(Enum):
    ALLOW = "allow"
    DENY = "deny"
    NO_OPINION = "no-opinion"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str = ""

    @property
    def allowed(self) -> bool:
        return self.verdict is Verdict.ALLOW


class Authenticator(Protocol):
    async def authenticate(self, token: str) -> UserInfo | None:
        """The user a bearer token names; None if this authenticator does not know it.
        Raise control.errors.Unauthorized for a token it recognises as bad (expired...)."""
        ...


class Authorizer(Protocol):
    async def authorize(self, attrs: Attributes) -> Decision:
        ...


class FirstAuthenticator:
    """The first authenticator that knows the token wins (authenticator union)."""

    def __init__(self, members: Sequence[Authenticator]) -> None:
        self.members = list(members)

    async def authenticate(self, token: str) -> UserInfo | None:
        for member in self.members:
            user = await member.authenticate(token)
            if user is not None:
                return user
        return None


class FirstAuthorizer:
    """The first authorizer with an opinion decides (authorizer union); none: deny."""

    def __init__(self, members: Sequence[Authorizer]) -> None:
        self.members = list(members)

    async def authorize(self, attrs: Attributes) -> Decision:
        reasons = []
        for member in self.members:
            decision = await member.authorize(attrs)
            if decision.verdict is not Verdict.NO_OPINION:
                return decision
            if decision.reason:
                reasons.append(decision.reason)
        # kube-apiserver's union: the members' reasons, nothing when none gave one
        return Decision(Verdict.NO_OPINION, "\n".join(reasons))


class AllowAll:
    """Every request allowed (tests of other layers, and `--authorization-mode AlwaysAllow`)."""

    async def authorize(self, attrs: Attributes) -> Decision:
        return Decision(Verdict.ALLOW, "AlwaysAllow")


ALLOW_ALL = AllowAll()
