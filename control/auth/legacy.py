"""The authorizer knet had before RBAC: every authenticated user may do anything; the
anonymous user only reads the public paths (health and version), as Kubernetes'
system:public-info-viewer allows. RBAC replaces it as the default.
"""

from __future__ import annotations

from control.auth.types import ANONYMOUS_USER, Attributes, Decision, Verdict

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/livez", "/version", "/version/"})


class AuthenticatedAllowed:
    async def authorize(self, attrs: Attributes) -> Decision:
        if attrs.user.name != ANONYMOUS_USER:
            return Decision(Verdict.ALLOW, "authenticated")
        if not attrs.resource_request and attrs.verb == "get" and attrs.path in PUBLIC_PATHS:
            return Decision(Verdict.ALLOW, "public info")
        return Decision(Verdict.NO_OPINION)
