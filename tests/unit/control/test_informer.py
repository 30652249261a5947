"""Informer: list then watch, the cache, handler calls in order, synced once, re-list on Gone
with the missed deletes/updates/adds synthesised, reconnect after errors without re-listing,
selectors, late handlers, failing handlers; on the real object layer (LocalClient)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from control.api.local import LocalClient
from control.api.objects import ObjectService
from control.client import ApiUnavailable
from control.clientbase import WatchEvent
from control.informer import Informer, object_key


def cm(name: str, value: str = "1", **labels: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": labels}, "data": {"v": value}}


class Recorder:
    """An InformerHandler that writes down every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def on_add(self, obj: dict) -> None:
        self.calls.append(("add", object_key(obj)))

    def on_update(self, old: dict, new: dict) -> None:
        self.calls.append(("update", object_key(new), old["data"]["v"], new["data"]["v"]))

    def on_delete(self, obj: dict) -> None:
        self.calls.append(("delete", object_key(obj)))

    def on_synced(self) -> None:
        self.calls.append(("synced",))


class Interruptible:
    """A Client whose watches can be broken (ApiUnavailable) and held back, to make the
    informer miss events the way a network cut would."""

    def __init__(self, inner: LocalClient) -> None:
        self.inner = inner
        self.held = False
        self.resume = asyncio.Event()
        self.resume.set()
        self.watches = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def cut(self) -> None:
        self.held = True
        self.resume.clear()

    def reconnect(self) -> None:
        self.held = False
        self.resume.set()

    async def watch(self, resource: str, **kw: Any) -> AsyncIterator[WatchEvent]:
        await self.resume.wait()
        self.watches += 1
        stream = self.inner.watch(resource, **kw)
        try:
            async for ev in stream:
                if self.held:
                    raise ApiUnavailable("connection cut by the test")
                yield ev
        finally:
            await stream.aclose()


async def until(pred, timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_list_then_watch_feeds_cache_and_handlers(client: LocalClient) -> None:
    await client.create("configmaps", cm("a"))
    inf = Informer(client, "configmaps", namespace="default")
    rec = Recorder()
    inf.add_handler(rec)
    inf.start()
    try:
        await inf.wait_synced(3)
        assert rec.calls == [("add", "default/a"), ("synced",)]
        await client.create("configmaps", cm("b"))
        await client.patch("configmaps", "a", {"data": {"v": "2"}}, namespace="default")
        await client.delete("configmaps", "b", namespace="default")
        await until(lambda: len(rec.calls) == 5)
        assert rec.calls[2:] == [("add", "default/b"), ("update", "default/a", "1", "2"),
                                 ("delete", "default/b")]
        assert inf.get("default/a")["data"] == {"v": "2"}
        assert inf.get("default/b") is None
        assert [object_key(o) for o in inf.list()] == ["default/a"]
        assert inf.relists == 1
    finally:
        await inf.stop()


async def test_gone_relists_and_synthesises_missed_changes(
        client: LocalClient, objects: ObjectService) -> None:
    for name in ("a", "b", "keep"):
        await client.create("configmaps", cm(name))
    flaky = Interruptible(client)
    inf = Informer(flaky, "configmaps", namespace="default", min_backoff=0.01)
    rec = Recorder()
    inf.add_handler(rec)
    inf.start()
    try:
        await inf.wait_synced(3)
        flaky.cut()
        await client.create("configmaps", cm("trigger"))      # breaks the stream
        await until(lambda: flaky.watches == 1 and not flaky.resume.is_set() and
                    inf.resource_version is not None)
        await asyncio.sleep(0.05)
        await client.delete("configmaps", "a", namespace="default")
        await client.patch("configmaps", "b", {"data": {"v": "9"}}, namespace="default")
        await client.create("configmaps", cm("c"))
        await objects.store.compact(await objects.store.current_revision())
        rec.calls.clear()
        flaky.reconnect()
        await until(lambda: inf.relists == 2)
        await until(lambda: len(rec.calls) >= 4)
        assert sorted(rec.calls) == sorted([("delete", "default/a"),
                                            ("update", "default/b", "1", "9"),
                                            ("add", "default/c"), ("add", "default/trigger")])
        assert sorted(inf.keys()) == ["default/b", "default/c", "default/keep",
                                      "default/trigger"]
        await client.create("configmaps", cm("after"))         # and it watches again
        await until(lambda: inf.get("default/after") is not None)
    finally:
        await inf.stop()


async def test_reconnect_after_error_resumes_without_relist(client: LocalClient) -> None:
    flaky = Interruptible(client)
    inf = Informer(flaky, "configmaps", namespace="default", min_backoff=0.01)
    rec = Recorder()
    inf.add_handler(rec)
    inf.start()
    try:
        await inf.wait_synced(3)
        flaky.cut()
        await client.create("configmaps", cm("x"))             # lost with the cut stream
        await asyncio.sleep(0.05)
        await client.create("configmaps", cm("y"))
        flaky.reconnect()
        await until(lambda: inf.get("default/y") is not None)
        assert inf.get("default/x") is not None                # re-watched from the old RV
        assert inf.relists == 1 and flaky.watches == 2
        assert ("add", "default/x") in rec.calls and rec.calls.count(("synced",)) == 1
    finally:
        await inf.stop()


async def test_selector_callables_async_handlers_and_failures(client: LocalClient) -> None:
    seen: list[str] = []

    async def on_add(obj: dict) -> None:
        await asyncio.sleep(0)
        seen.append(obj["metadata"]["name"])

    def broken(obj: dict) -> None:
        raise RuntimeError("handler bug")

    inf = Informer(client, "configmaps", label_selector="tier=fe")
    inf.add_handler(on_add=broken)
    inf.add_handler(on_add=on_add)
    inf.start()
    try:
        await inf.wait_synced(3)
        await client.create("configmaps", cm("be", tier="be"))
        await client.create("configmaps", cm("fe", tier="fe"))
        await until(lambda: seen == ["fe"])
        assert inf.keys() == ["default/fe"]
        late = Recorder()
        inf.add_handler(late)                                  # replayed at once
        await until(lambda: late.calls == [("add", "default/fe"), ("synced",)])
    finally:
        await inf.stop()


async def test_wait_synced_times_out_with_a_message(client: LocalClient) -> None:
    inf = Informer(client, "configmaps")
    with pytest.raises(TimeoutError, match="configmaps: not synced"):
        await inf.wait_synced(0.05)


async def test_cluster_scoped_keys_and_stop(client: LocalClient) -> None:
    inf = Informer(client, "namespaces")
    inf.start()
    await inf.wait_synced(3)
    assert inf.get("default") is not None
    await inf.stop()
    await client.create("namespaces", {"metadata": {"name": "late"}})
    await asyncio.sleep(0.05)
    assert inf.get("late") is None                             # stopped means stopped
