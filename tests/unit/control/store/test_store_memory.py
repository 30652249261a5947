"""The in-memory store passes the Store contract, plus its own history limit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

import pytest
from store_contract import StoreContract, take

from control.errors import Gone
from control.store.memory import MemoryStore


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    s = MemoryStore()
    yield s
    await s.close()


class TestMemoryStore(StoreContract):
    pass


async def test_history_beyond_max_history_is_compacted() -> None:
    s = MemoryStore(max_history=10)
    for i in range(30):
        await s.create(f"/h/{i}", b"v")
    with pytest.raises(Gone):
        async with aclosing(s.watch("/h/", from_revision=0)) as it:
            await take(it, 1)
    async with aclosing(s.watch("/h/", from_revision=25)) as it:
        assert [e.kv.key for e in await take(it, 5)] == [f"/h/{i}" for i in range(25, 30)]


async def test_a_slow_watcher_rereads_history_and_misses_nothing() -> None:
    s = MemoryStore(max_backlog=5)
    async with aclosing(s.watch("/b/", from_revision=0)) as it:
        await s.create("/b/first", b"v")
        assert [e.kv.key for e in await take(it, 1)] == ["/b/first"]
        for i in range(12):
            await s.create(f"/b/{i:02d}", b"v")
        assert [e.kv.key for e in await take(it, 12)] == [f"/b/{i:02d}" for i in range(12)]
        await s.create("/b/live", b"v")
        assert [e.kv.key for e in await take(it, 1)] == ["/b/live"]


async def test_a_slow_watcher_whose_history_was_compacted_gets_gone() -> None:
    s = MemoryStore(max_backlog=5)
    async with aclosing(s.watch("/b/", from_revision=0)) as it:
        await s.create("/b/first", b"v")
        await take(it, 1)
        for i in range(12):
            await s.create(f"/b/{i:02d}", b"v")
        await s.compact(await s.current_revision())
        with pytest.raises(Gone, match="compacted"):
            await take(it, 1)


async def test_closing_the_store_ends_its_watches() -> None:
    s = MemoryStore()
    it = s.watch("/", from_revision=0)
    await s.create("/a", b"v")
    await take(it, 1)
    await s.close()
    assert [e async for e in it] == []
    with pytest.raises(RuntimeError, match="closed"):
        await s.get("/a")
