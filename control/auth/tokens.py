"""Static bearer tokens: kube-apiserver's --token-auth-file, one token a known user.

knet writes the admin's token (user `kubernetes-admin`, group `system:masters`, as kubeadm's
admin.conf) and one per component; `StaticTokens` compares in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from control.auth.types import AUTHENTICATED, UserInfo

__all__ = ["ADMIN", "StaticTokens"]

ADMIN = UserInfo("kubernetes-admin", groups=("system:masters", AUTHENTICATED))


class StaticTokens:
    def __init__(self, tokens: Mapping[str, UserInfo]) -> None:
        self._tokens = {t.encode(): u for t, u in tokens.items()}

    async def authenticate(self, token: str) -> UserInfo | None:
        got = token.encode()
        found = None
        for known, user in self._tokens.items():
            if hmac.compare_digest(got, known):
                found = user
        return found
