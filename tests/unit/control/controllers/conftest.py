"""Fixtures of the controller tests: the real object layer on a MemoryStore behind a
LocalClient, a FakeClock, and a `ControllerHarness` (ctlharness.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from ctlharness import ControllerHarness, admit_fn

from control.api.local import LocalClient
from control.api.objects import ObjectService
from control.clock import FakeClock
from control.store.memory import MemoryStore


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def objects(clock: FakeClock) -> ObjectService:
    svc = ObjectService(MemoryStore(), admit=admit_fn(), now=clock.now)
    await svc.start()
    for name in ("default", "kube-system", "kube-node-lease"):
        await svc.create("namespaces", {"metadata": {"name": name}})
    return svc


@pytest.fixture
def client(objects: ObjectService) -> LocalClient:
    return LocalClient(objects)


@pytest.fixture
async def harness(client: LocalClient, clock: FakeClock) -> AsyncIterator[ControllerHarness]:
    h = ControllerHarness(client, clock)
    yield h
    await h.stop()
