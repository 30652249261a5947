"""TokenReview (authentication.k8s.io/v1): is `spec.token` valid, and whose is it?

Answered by the API server's own authenticators, as kube-apiserver does: a service-account
token is checked against `spec.audiences` (default: the API server's audiences) and the
objects it is bound to; a static token (the token file) knows no audience, so it passes
only when the requested audiences include one of the API server's. Failure is not an HTTP
error: `status.authenticated` is false and `status.error` says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from control.api.reviews import ReviewContext, ReviewHandler
from control.auth.satokens import ServiceAccountTokens
from control.auth.types import Authenticator
from control.errors import BadRequest, Unauthorized

__all__ = ["token_review"]

Obj = dict[str, Any]


def token_review(static: Authenticator, accounts: ServiceAccountTokens, *,
                 audiences: Sequence[str]) -> ReviewHandler:
    api_audiences = list(audiences)

    async def review(ctx: ReviewContext, body: Obj) -> Obj:
        spec = body.get("spec") or {}
        token = spec.get("token")
        if not isinstance(token, str) or not token:
            raise BadRequest("TokenReview: spec.token is required; put the bearer token to "
                             "check there")
        wanted = [str(a) for a in spec.get("audiences") or []] or api_audiences
        try:
            found = await accounts.review(token, wanted)
            if found is None:
                user = await static.authenticate(token)
                good = [a for a in wanted if a in api_audiences]
                if user is not None and good:
                    found = (user, good)
        except Unauthorized as exc:
            return {"user": {}, "error": f"[{exc.message}]"}
        if found is None:
            return {"user": {}, "error": "[invalid bearer token, token lookup failed]"}
        user, good = found
        return {"authenticated": True, "user": user.to_dict(), "audiences": good}
    return review
