"""Fixtures of the API tests: an ObjectService on a fresh MemoryStore with the namespaces
the server makes at start, and a LocalClient on it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from control.api.local import LocalClient
from control.api.objects import ObjectService
from control.store.memory import MemoryStore

sys.path.insert(0, str(Path(__file__).parent))        # for `import apifixtures`


@pytest.fixture
async def objects() -> ObjectService:
    svc = ObjectService(MemoryStore())
    await svc.start()
    for name in ("default", "kube-system"):
        await svc.create("namespaces", {"metadata": {"name": name}})
    return svc


@pytest.fixture
def client(objects: ObjectService) -> LocalClient:
    return LocalClient(objects)

