"""Create-only resources that are answers, not objects: TokenReview, SelfSubjectReview,
SubjectAccessReview and friends. A POST runs the review's handler and returns the request
with its `status` filled in (201, as kube-apiserver does); nothing is stored, and every other
verb is 405.

A review is registered by plural in `app[REVIEWS]` (`Settings.reviews`): `async def
handler(ctx: ReviewContext, body: Obj) -> Obj` returns the `status`. The resource itself is
declared in `control.models.resources` with `verbs=("create",)` and `stored=False`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from control.api.objects import ObjectService
from control.auth.types import UserInfo
from control.errors import BadRequest
from control.models.resources import ResourceInfo

__all__ = ["ReviewContext", "ReviewHandler", "run_review"]

Obj = dict[str, Any]


@dataclass(frozen=True)
class ReviewContext:
    user: UserInfo               # who asked (after impersonation)
    objects: ObjectService
    namespace: str | None        # for namespaced reviews (LocalSubjectAccessReview)


ReviewHandler = Callable[[ReviewContext, Obj], Awaitable[Obj]]


async def run_review(handlers: Mapping[str, ReviewHandler], info: ResourceInfo,
                     ctx: ReviewContext, body: Any) -> Obj:
    if not isinstance(body, dict):
        raise BadRequest(f"a {info.kind} must be a JSON object, got {type(body).__name__}")
    kind = body.get("kind")
    if kind not in (None, info.kind):
        raise BadRequest(f"the body is a {kind}, but {info.path(ctx.namespace)} takes a "
                         f"{info.kind}")
    out = dict(body)
    out["kind"], out["apiVersion"] = info.kind, info.api_version
    out.setdefault("metadata", {})
    out["status"] = await handlers[info.plural](ctx, out)
    return out
