"""`ControllerHarness`: runs chosen controllers on a LocalClient through the same wiring as
`knet control` (control.controllers.manager), with helpers to wait for and fake state; and
the fixtures clock / objects / client / harness (the real object layer on a MemoryStore)."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from control.api.local import LocalClient
from control.api.objects import ObjectService
from control.clock import FakeClock, rfc3339
from control.controllers.manager import ControllerOptions, InformerFactory, build
from control.store.memory import MemoryStore


def admit_fn():
    try:
        from control.models.validation import admit
        return admit
    except ImportError:
        return lambda resource, obj, *, old=None: (obj, [])


class ControllerHarness:
    def __init__(self, client: LocalClient, clock: FakeClock) -> None:
        self.client = client
        self.clock = clock
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.informers = InformerFactory(client)
        self.controllers: list[Any] = []

    async def start(self, *names: str, **opts: Any) -> None:
        options = ControllerOptions(controllers=names, **opts)
        self.controllers = build(self.client, clock=self.clock, informers=self.informers,
                                 options=options)
        await self.informers.start_and_sync(5)
        self._tasks = [asyncio.create_task(c.run(self._stop)) for c in self.controllers]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.informers.stop()

    async def eventually(self, check: Callable[[], Any], timeout: float = 5.0,
                         what: str = "") -> Any:
        """Poll (real time) until check() (sync or async) returns a truthy value."""
        deadline = asyncio.get_running_loop().time() + timeout
        last: Any = None
        while True:
            last = check()
            if asyncio.iscoroutine(last):
                last = await last
            if last:
                return last
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what or check}: last={last!r}")
            await asyncio.sleep(0.01)

    async def settle(self, rounds: int = 20) -> None:
        """Let informers and queues drain (real time, bounded)."""
        for _ in range(rounds):
            await asyncio.sleep(0.01)

    async def pods(self, namespace: str = "default", selector: str | None = None) -> list[dict]:
        return (await self.client.list("pods", namespace=namespace,
                                       label_selector=selector)).items

    async def mark_pod(self, pod: dict, *, ready: bool = True, node: str | None = None,
                       ip: str | None = None, phase: str = "Running") -> dict:
        """What a kubelet would do: bind (if asked), then Running + Ready condition."""
        md = pod["metadata"]
        cur = await self.client.get("pods", md["name"], namespace=md["namespace"])
        if node and not cur["spec"].get("nodeName"):
            await self.client.create("pods", {
                "apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": md["name"], "namespace": md["namespace"]},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}},
                namespace=md["namespace"], subresource="binding")
            cur = await self.client.get("pods", md["name"], namespace=md["namespace"])
        status = copy.deepcopy(cur.get("status") or {})
        now = rfc3339(self.clock.now())
        status["phase"] = phase
        status["podIP"] = ip or status.get("podIP") or "10.244.1.%d" % (hash(md["name"]) % 250 + 2)
        status["podIPs"] = [{"ip": status["podIP"]}]
        conds = [c for c in status.get("conditions") or [] if c.get("type") != "Ready"]
        conds.append({"type": "Ready", "status": "True" if ready else "False",
                      "lastTransitionTime": now})
        status["conditions"] = conds
        cur["status"] = status
        return await self.client.update("pods", cur, subresource="status")




# ---- fixtures (re-exported by conftest.py and by tests outside this directory) ----

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
