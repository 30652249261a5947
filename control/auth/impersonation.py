"""Impersonation (k8s.io/apiserver/pkg/endpoints/filters/impersonation.go): after
authentication and before authorization, `Impersonate-User`, `Impersonate-Group`,
`Impersonate-Uid` and `Impersonate-Extra-<key>` headers make the request act as another user,
each one allowed only by the `impersonate` verb on users (or serviceaccounts), groups, uids
and userextras. This is how `kubectl --as=jane --as-group=devs` works.

Key design choice: every requested identity part is authorized on its own with the
caller's identity, and the first refusal is a 403 in kube-apiserver's words.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import unquote

from multidict import CIMultiDictProxy

from control.auth.requestinfo import forbidden_message
from control.auth.types import (
    ANONYMOUS_USER,
    AUTHENTICATED,
    UNAUTHENTICATED,
    Attributes,
    Authorizer,
    UserInfo,
)
from control.errors import Forbidden, Internal

__all__ = ["impersonate", "wants_impersonation"]

USER_HEADER = "Impersonate-User"
GROUP_HEADER = "Impersonate-Group"
UID_HEADER = "Impersonate-Uid"
EXTRA_PREFIX = "impersonate-extra-"
SA_PREFIX = "system:serviceaccount:"
_AUTHN = "authentication.k8s.io"


def wants_impersonation(headers: Mapping[str, str]) -> bool:
    """Cheap test for the hot path (~1 us): any Impersonate-* header at all."""
    for key in headers:
        if key[:1] in "Ii" and key[:12].lower() == "impersonate-":
            return True
    return False


def _requests(headers: CIMultiDictProxy[str]) -> tuple[str, list[str], str,
                                                        dict[str, tuple[str, ...]]]:
    name = headers.get(USER_HEADER, "")
    groups = headers.getall(GROUP_HEADER, [])
    uid = headers.get(UID_HEADER, "")
    extra: dict[str, list[str]] = {}
    for key, value in headers.items():
        if key.lower().startswith(EXTRA_PREFIX):
            extra.setdefault(unquote(key[len(EXTRA_PREFIX):]).lower(), []).append(value)
    if (groups or extra or uid) and not name:
        parts = [h for h, v in ((GROUP_HEADER, groups), (UID_HEADER, uid),
                                ("Impersonate-Extra-*", extra)) if v]
        raise Internal(f"Internal error occurred: requested {', '.join(parts)} without "
                       f"impersonating a user; add {USER_HEADER} (kubectl --as)")
    return name, list(groups), uid, {k: tuple(v) for k, v in extra.items()}


async def _check(authz: Authorizer, attrs: Attributes) -> None:
    decision = await authz.authorize(attrs)
    if not decision.allowed:
        raise Forbidden(forbidden_message(attrs, decision.reason), kind=attrs.resource,
                        name=attrs.name, group=attrs.api_group)


async def impersonate(user: UserInfo, headers: CIMultiDictProxy[str],
                      authz: Authorizer) -> UserInfo:
    """The user the request acts as: `user` itself without Impersonate-* headers."""
    name, groups, uid, extra = _requests(headers)
    if not name:
        return user
    if name.startswith(SA_PREFIX) and name.count(":") == 3:
        _, _, ns, sa = name.split(":")
        await _check(authz, Attributes(user=user, verb="impersonate", resource="serviceaccounts",
                                       namespace=ns, name=sa, api_version="v1"))
        if not groups:
            groups = ["system:serviceaccounts", f"system:serviceaccounts:{ns}"]
    else:
        await _check(authz, Attributes(user=user, verb="impersonate", resource="users",
                                       name=name, api_version="v1"))
    for group in groups:
        await _check(authz, Attributes(user=user, verb="impersonate", resource="groups",
                                       name=group, api_version="v1"))
    if uid:
        await _check(authz, Attributes(user=user, verb="impersonate", resource="uids",
                                       name=uid, api_group=_AUTHN, api_version="v1"))
    for key, values in extra.items():
        for value in values:
            await _check(authz, Attributes(user=user, verb="impersonate",
                                           resource="userextras", subresource=key, name=value,
                                           api_group=_AUTHN, api_version="v1"))
    if name != ANONYMOUS_USER:
        if AUTHENTICATED not in groups and UNAUTHENTICATED not in groups:
            groups.append(AUTHENTICATED)
    elif UNAUTHENTICATED not in groups:
        groups.append(UNAUTHENTICATED)
    return UserInfo(name, uid=uid, groups=tuple(groups), extra=extra)
