"""SharedInformers: the node proxy's consumers share one list+watch per resource, each
consumer with its own handlers, a late one replayed the cache, a stopped one silent."""

from __future__ import annotations

import asyncio
from typing import Any

from control.api.local import LocalClient
from control.api.objects import ObjectService
from control.store.memory import MemoryStore
from knet.sharedinformers import SharedInformers


class CountingClient(LocalClient):
    def __init__(self, objects: ObjectService) -> None:
        super().__init__(objects)
        self.watches: list[str] = []

    def watch(self, resource: str, **kw: Any) -> Any:
        self.watches.append(resource)
        return super().watch(resource, **kw)


async def _client() -> CountingClient:
    objects = ObjectService(MemoryStore())
    await objects.start()
    client = CountingClient(objects)
    await client.create("namespaces", {"metadata": {"name": "default"}})
    return client


def _pod(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


async def _until(cond: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_consumers_share_one_watch_and_each_sees_every_pod() -> None:
    async def run() -> None:
        client = await _client()
        await client.create("pods", _pod("a"))
        shared = SharedInformers()
        seen: dict[str, list[str]] = {"index": [], "netpol": []}
        first, second = shared(client, "pods"), shared(client, "pods")
        for who, inf in (("index", first), ("netpol", second)):
            inf.add_handler(on_add=lambda o, who=who: seen[who].append(o["metadata"]["name"]))
            inf.start()
        await first.wait_synced(5)
        await second.wait_synced(5)
        await client.create("pods", _pod("b"))
        await _until(lambda: seen["index"] == ["a", "b"] and seen["netpol"] == ["a", "b"])
        assert client.watches.count("pods") == 1
        assert shared.resources() == ["pods"]
        await first.stop()
        await second.stop()

    asyncio.run(run())


def test_a_late_consumer_has_the_cache_when_wait_synced_returns() -> None:
    async def run() -> None:
        client = await _client()
        for name in ("a", "b", "c"):
            await client.create("pods", _pod(name))
        shared = SharedInformers()
        early = shared(client, "pods")
        early.start()
        await early.wait_synced(5)
        late_seen: list[str] = []
        late = shared(client, "pods")
        late.add_handler(on_add=lambda o: late_seen.append(o["metadata"]["name"]))
        late.start()
        await late.wait_synced(5)
        assert sorted(late_seen) == ["a", "b", "c"]       # no waiting after wait_synced
        assert client.watches.count("pods") == 1
        await early.stop()
        await late.stop()

    asyncio.run(run())


def test_a_stopped_consumer_hears_nothing_and_the_last_stop_ends_the_watch() -> None:
    async def run() -> None:
        client = await _client()
        shared = SharedInformers()
        seen: dict[str, list[str]] = {"a": [], "b": []}
        handles = {who: shared(client, "pods") for who in seen}
        for who, inf in handles.items():
            inf.add_handler(on_add=lambda o, who=who: seen[who].append(o["metadata"]["name"]))
            inf.start()
            await inf.wait_synced(5)
        await handles["a"].stop()
        await client.create("pods", _pod("x"))
        await _until(lambda: seen["b"] == ["x"])
        assert seen["a"] == []
        assert getattr(handles["b"], "synced") is True        # the cache is still live
        await handles["b"].stop()
        await client.create("pods", _pod("y"))
        await asyncio.sleep(0.1)
        assert seen["b"] == ["x"] and not any(
            t.get_name() == "informer-pods" and not t.done() for t in asyncio.all_tasks())

    asyncio.run(run())
