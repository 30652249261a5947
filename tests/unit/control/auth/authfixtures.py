"""Tokens and users of the authorization tests (imported by name: conftest.py puts this
directory on sys.path)."""

from __future__ import annotations

from control.auth.types import UserInfo

TOKEN = "admin-token"
NODE_TOKEN = "node-1-token"
NODE_1 = UserInfo("system:node:node-1", groups=("system:nodes", "system:authenticated"))
JANE_TOKEN = "jane-token"
JANE = UserInfo("jane", groups=("system:authenticated",))
