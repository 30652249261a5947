"""Shared by the kubelet API tests: `serve_kubelet(app)` runs a kubelet app on loopback
(plain HTTP) and yields its base URL; `admin_auth` accepts the ADMIN bearer token as
system:masters, as TokenReview would."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from control.auth.types import UserInfo
from knet.kubelet.auth import KubeletAuth

ADMIN = {"Authorization": "Bearer admin-token"}


class AdminTokens:
    async def authenticate(self, token: str) -> UserInfo | None:
        return UserInfo("admin", groups=("system:masters",)) if token == "admin-token" else None


@pytest.fixture
def admin_auth() -> KubeletAuth:
    return KubeletAuth(tokens=AdminTokens())


@contextlib.asynccontextmanager
async def _serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
def serve_kubelet() -> Callable[[web.Application], Any]:
    return _serve
