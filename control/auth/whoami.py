"""SelfSubjectReview (authentication.k8s.io/v1): `kubectl auth whoami` -- the user the API
server authenticated this request as, after impersonation."""

from __future__ import annotations

from typing import Any

from control.api.reviews import ReviewContext


async def self_subject_review(ctx: ReviewContext, body: dict[str, Any]) -> dict[str, Any]:
    return {"userInfo": ctx.user.to_dict()}
