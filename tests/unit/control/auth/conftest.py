"""An API server with Node,RBAC (bootstrap policy reconciled, informers synced) on a memory
store, and an aiohttp TestClient on it authenticated as the admin (system:masters)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from control.api.app import Settings, create_app
from control.auth.rbacsetup import NodeRBAC
from control.auth.tokens import ADMIN, StaticTokens
from control.store.memory import MemoryStore

sys.path.insert(0, str(Path(__file__).parent))        # for `import authfixtures`
from authfixtures import JANE, JANE_TOKEN, NODE_1, NODE_TOKEN, TOKEN


@pytest.fixture
async def rbac() -> NodeRBAC:
    return NodeRBAC()


@pytest.fixture
async def api(rbac: NodeRBAC) -> AsyncIterator[TestClient]:
    authn = StaticTokens({TOKEN: ADMIN, NODE_TOKEN: NODE_1, JANE_TOKEN: JANE})
    app = create_app(MemoryStore(), Settings(token=TOKEN, authn=authn, **rbac.settings()))
    rbac.install(app)
    async with TestClient(TestServer(app), headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        for ns in ("default", "kube-system", "kube-node-lease", "team"):
            resp = await c.post("/api/v1/namespaces", json={"metadata": {"name": ns}})
            assert resp.status == 201
        yield c
