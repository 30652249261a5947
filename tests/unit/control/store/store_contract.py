"""The `Store` contract: every backend (memory, SQLite, etcd) runs these same tests.

A backend's test file subclasses `StoreContract` and provides a `store` fixture yielding a fresh,
open store (keys from other tests must not be visible; revisions may start anywhere, so the tests
only assert revisions relative to `current_revision()`). Stores also expose `active_watches`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import aclosing

import pytest

from control.errors import AlreadyExists, Conflict, Gone, NotFound
from control.store.base import KV, Store, StoreEvent

TIMEOUT = 5.0


async def take(it: AsyncIterator[StoreEvent], n: int) -> list[StoreEvent]:
    """The next n events of a watch, failing the test if they take more than TIMEOUT."""
    out: list[StoreEvent] = []
    for _ in range(n):
        out.append(await asyncio.wait_for(anext(it), TIMEOUT))
    return out


async def nothing_more(it: AsyncIterator[StoreEvent], wait: float = 0.3) -> bool:
    """True if the watch delivers nothing within `wait` seconds."""
    try:
        await asyncio.wait_for(anext(it), wait)
    except TimeoutError:
        return True
    return False


async def until(cond: object, what: str) -> None:
    for _ in range(int(TIMEOUT / 0.01)):
        if callable(cond) and cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def summary(events: list[StoreEvent]) -> list[tuple[str, str, bytes]]:
    return [(e.type, e.kv.key, e.kv.value) for e in events]


class StoreContract:
    """Shared tests; subclasses provide the `store` fixture."""

    async def test_is_a_store(self, store: Store) -> None:
        assert isinstance(store, Store)

    async def test_create_then_get(self, store: Store) -> None:
        rev0 = await store.current_revision()
        kv = await store.create("/r/pods/a", b'{"x":1}')
        assert kv == KV("/r/pods/a", b'{"x":1}', rev0 + 1, rev0 + 1)
        assert await store.get("/r/pods/a") == kv
        assert await store.get("/r/pods/missing") is None
        assert await store.current_revision() == rev0 + 1

    async def test_every_write_bumps_the_revision_by_one(self, store: Store) -> None:
        rev = await store.current_revision()
        seen = [(await store.create("/k/a", b"1")).mod_revision,
                (await store.create("/k/b", b"1")).mod_revision,
                (await store.update("/k/a", b"2")).mod_revision,
                (await store.delete("/k/b")).mod_revision,
                (await store.create("/k/b", b"3")).mod_revision]
        assert seen == [rev + 1, rev + 2, rev + 3, rev + 4, rev + 5]
        assert await store.current_revision() == rev + 5

    async def test_create_of_existing_key_is_already_exists(self, store: Store) -> None:
        await store.create("/k/a", b"1")
        rev = await store.current_revision()
        with pytest.raises(AlreadyExists, match="/k/a"):
            await store.create("/k/a", b"2")
        assert (await store.get("/k/a")).value == b"1"  # type: ignore[union-attr]
        assert await store.current_revision() == rev

    async def test_update_keeps_create_revision_and_moves_mod_revision(self, store: Store) -> None:
        a = await store.create("/k/a", b"1")
        b = await store.update("/k/a", b"2", expected_revision=a.mod_revision)
        assert (b.create_revision, b.mod_revision, b.value) == (a.mod_revision,
                                                                a.mod_revision + 1, b"2")
        c = await store.update("/k/a", b"3")  # unconditional
        assert c.mod_revision == b.mod_revision + 1 and await store.get("/k/a") == c

    async def test_update_with_stale_revision_is_conflict(self, store: Store) -> None:
        a = await store.create("/k/a", b"1")
        await store.update("/k/a", b"2")
        rev = await store.current_revision()
        with pytest.raises(Conflict, match="/k/a"):
            await store.update("/k/a", b"3", expected_revision=a.mod_revision)
        assert (await store.get("/k/a")).value == b"2"  # type: ignore[union-attr]
        assert await store.current_revision() == rev

    async def test_update_or_delete_of_missing_key_is_not_found(self, store: Store) -> None:
        with pytest.raises(NotFound, match="/k/nope"):
            await store.update("/k/nope", b"1")
        with pytest.raises(NotFound, match="/k/nope"):
            await store.update("/k/nope", b"1", expected_revision=3)
        with pytest.raises(NotFound, match="/k/nope"):
            await store.delete("/k/nope")

    async def test_delete_returns_the_last_value(self, store: Store) -> None:
        a = await store.create("/k/a", b"1")
        b = await store.update("/k/a", b"last")
        gone = await store.delete("/k/a", expected_revision=b.mod_revision)
        assert gone == KV("/k/a", b"last", a.create_revision, b.mod_revision + 1)
        assert await store.get("/k/a") is None
        again = await store.create("/k/a", b"new")
        assert again.create_revision == gone.mod_revision + 1

    async def test_delete_with_stale_revision_is_conflict(self, store: Store) -> None:
        a = await store.create("/k/a", b"1")
        await store.update("/k/a", b"2")
        with pytest.raises(Conflict, match="/k/a"):
            await store.delete("/k/a", expected_revision=a.mod_revision)
        assert await store.get("/k/a") is not None

    async def test_values_are_opaque_bytes(self, store: Store) -> None:
        blob = bytes(range(256)) * 4
        await store.create("/k/bin", blob)
        await store.create("/k/empty", b"")
        assert (await store.get("/k/bin")).value == blob  # type: ignore[union-attr]
        assert (await store.get("/k/empty")).value == b""  # type: ignore[union-attr]

    async def test_list_by_prefix_is_sorted_and_isolated(self, store: Store) -> None:
        for key in ["/r/pods/ns/b", "/r/podsx/ns/a", "/r/pods/ns/a", "/r/pod", "/r/pods/z/c"]:
            await store.create(key, key.encode())
        kvs, rev = await store.list("/r/pods/")
        assert [kv.key for kv in kvs] == ["/r/pods/ns/a", "/r/pods/ns/b", "/r/pods/z/c"]
        assert [kv.value for kv in kvs] == [kv.key.encode() for kv in kvs]
        assert rev == await store.current_revision()
        assert (await store.list("/r/nothing/")) == ([], rev)
        all_kvs, _ = await store.list("")
        assert len(all_kvs) == 5

    async def test_list_pagination_with_start_after_and_limit(self, store: Store) -> None:
        keys = [f"/r/cm/ns/k{i:03d}" for i in range(25)]
        for key in reversed(keys):
            await store.create(key, b"v")
        await store.create("/r/cmz", b"outside")
        got: list[str] = []
        after: str | None = None
        while True:
            page, _ = await store.list("/r/cm/", start_after=after, limit=10)
            got += [kv.key for kv in page]
            if len(page) < 10:
                break
            after = page[-1].key
        assert got == keys
        page, _ = await store.list("/r/cm/", start_after="/r/cm/ns/k020")
        assert [kv.key for kv in page] == keys[21:]

    async def test_list_reflects_deletes_and_updates(self, store: Store) -> None:
        await store.create("/r/a/1", b"1")
        await store.create("/r/a/2", b"2")
        await store.delete("/r/a/1")
        await store.update("/r/a/2", b"22")
        kvs, _ = await store.list("/r/a/")
        assert [(kv.key, kv.value) for kv in kvs] == [("/r/a/2", b"22")]

    async def test_watch_catches_up_from_an_old_revision_then_goes_live(self, store: Store) -> None:
        rev0 = await store.current_revision()
        await store.create("/w/a", b"1")
        await store.create("/w/b", b"1")
        await store.update("/w/a", b"2")
        await store.delete("/w/b")
        async with aclosing(store.watch("/w/", from_revision=rev0)) as it:
            old = await take(it, 4)
            assert summary(old) == [("PUT", "/w/a", b"1"), ("PUT", "/w/b", b"1"),
                                    ("PUT", "/w/a", b"2"), ("DELETE", "/w/b", b"1")]
            assert [e.revision for e in old] == [rev0 + 1, rev0 + 2, rev0 + 3, rev0 + 4]
            await store.create("/w/c", b"live")
            await store.update("/w/a", b"3")
            live = await take(it, 2)
            assert summary(live) == [("PUT", "/w/c", b"live"), ("PUT", "/w/a", b"3")]
            assert [e.revision for e in live] == [rev0 + 5, rev0 + 6]

    async def test_watch_from_a_middle_revision_skips_earlier_events(self, store: Store) -> None:
        await store.create("/w/a", b"1")
        mid = (await store.create("/w/b", b"1")).mod_revision
        await store.create("/w/c", b"1")
        async with aclosing(store.watch("/w/", from_revision=mid)) as it:
            assert summary(await take(it, 1)) == [("PUT", "/w/c", b"1")]
            assert await nothing_more(it)

    async def test_watch_events_carry_prev_and_create_revision(self, store: Store) -> None:
        rev0 = await store.current_revision()
        a = await store.create("/w/a", b"1")
        b = await store.update("/w/a", b"2")
        d = await store.delete("/w/a")
        async with aclosing(store.watch("/w/", from_revision=rev0)) as it:
            created, updated, deleted = await take(it, 3)
        assert created.kv == a and created.prev is None
        assert updated.kv == b and updated.prev == a
        assert deleted.type == "DELETE" and deleted.kv == d and deleted.prev == b

    async def test_watch_prefix_is_isolated(self, store: Store) -> None:
        rev0 = await store.current_revision()
        async with aclosing(store.watch("/registry/pods/", from_revision=rev0)) as it:
            await store.create("/registry/podsx/ns/a", b"no")
            await store.create("/registry/pod", b"no")
            await store.create("/registry/pods/ns/a", b"yes")
            await store.create("/registry/services/ns/a", b"no")
            assert summary(await take(it, 1)) == [("PUT", "/registry/pods/ns/a", b"yes")]
            assert await nothing_more(it)

    async def test_watch_from_now_sees_only_later_changes(self, store: Store) -> None:
        await store.create("/w/old", b"1")
        now = await store.current_revision()
        async with aclosing(store.watch("/w/", from_revision=now)) as it:
            assert await nothing_more(it, 0.2)
            await store.update("/w/old", b"2")
            assert summary(await take(it, 1)) == [("PUT", "/w/old", b"2")]

    async def test_many_concurrent_watchers_see_the_same_ordered_stream(self, store: Store) -> None:
        rev0 = await store.current_revision()
        n_watchers, n_writes = 40, 30
        streams = [store.watch("/m/", from_revision=rev0) for _ in range(n_watchers)]
        readers = [asyncio.create_task(take(s, n_writes)) for s in streams]
        await asyncio.gather(*(store.create(f"/m/k{i:02d}", b"%d" % i) for i in range(n_writes)))
        results = await asyncio.gather(*readers)
        revs = [e.revision for e in results[0]]
        assert revs == list(range(rev0 + 1, rev0 + n_writes + 1))
        assert all(summary(r) == summary(results[0]) for r in results)
        for s in streams:
            await s.aclose()  # type: ignore[attr-defined]
        await until(lambda: store.active_watches == 0, "watchers to be released")  # type: ignore[attr-defined]

    async def test_watch_below_compaction_is_gone(self, store: Store) -> None:
        rev0 = await store.current_revision()
        await store.create("/c/a", b"1")
        await store.update("/c/a", b"2")
        mark = (await store.update("/c/a", b"3")).mod_revision
        await store.create("/c/b", b"1")
        await store.compact(mark)
        with pytest.raises(Gone):
            async with aclosing(store.watch("/c/", from_revision=rev0)) as it:
                await take(it, 1)
        with pytest.raises(Gone):
            async with aclosing(store.watch("/c/", from_revision=mark - 1)) as it:
                await take(it, 1)
        await store.update("/c/a", b"4")
        async with aclosing(store.watch("/c/", from_revision=mark)) as it:
            events = await take(it, 2)
        assert summary(events) == [("PUT", "/c/b", b"1"), ("PUT", "/c/a", b"4")]
        assert events[1].prev is not None and events[1].prev.value == b"3"  # kept by compaction
        kvs, _ = await store.list("/c/")
        assert [(kv.key, kv.value) for kv in kvs] == [("/c/a", b"4"), ("/c/b", b"1")]

    async def test_compaction_is_idempotent_and_not_beyond_now(self, store: Store) -> None:
        await store.create("/c/a", b"1")
        now = await store.current_revision()
        await store.compact(now)
        await store.compact(now)
        await store.compact(now - 1)
        with pytest.raises(ValueError):
            await store.compact(now + 10)
        assert (await store.get("/c/a")).value == b"1"  # type: ignore[union-attr]

    async def test_watch_cancellation_frees_the_watcher(self, store: Store) -> None:
        rev0 = await store.current_revision()
        got: list[StoreEvent] = []

        async def consume() -> None:
            async for event in store.watch("/x/", from_revision=rev0):
                got.append(event)

        task = asyncio.create_task(consume())
        await until(lambda: store.active_watches == 1, "the watch to open")  # type: ignore[attr-defined]
        await store.create("/x/a", b"1")
        await until(lambda: len(got) == 1, "the first event")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(lambda: store.active_watches == 0, "the watch to close")  # type: ignore[attr-defined]
        await store.create("/x/b", b"1")  # nobody listens: must not fail or leak
        assert len(got) == 1

    async def test_breaking_out_of_a_watch_frees_it(self, store: Store) -> None:
        rev0 = await store.current_revision()
        await store.create("/x/a", b"1")
        async with aclosing(store.watch("/x/", from_revision=rev0)) as it:
            async for _ in it:
                break
        await until(lambda: store.active_watches == 0, "the watch to close")  # type: ignore[attr-defined]

    async def test_concurrent_creates_of_one_key_let_exactly_one_win(self, store: Store) -> None:
        results = await asyncio.gather(*(store.create("/race/a", b"%d" % i) for i in range(20)),
                                       return_exceptions=True)
        winners = [r for r in results if isinstance(r, KV)]
        assert len(winners) == 1
        assert all(isinstance(r, AlreadyExists) for r in results if not isinstance(r, KV))
        assert await store.get("/race/a") == winners[0]

    async def test_concurrent_updates_on_one_revision_let_exactly_one_win(self,
                                                                         store: Store) -> None:
        a = await store.create("/race/a", b"0")
        results = await asyncio.gather(
            *(store.update("/race/a", b"%d" % i, expected_revision=a.mod_revision)
              for i in range(20)), return_exceptions=True)
        winners = [r for r in results if isinstance(r, KV)]
        assert len(winners) == 1
        assert all(isinstance(r, Conflict) for r in results if not isinstance(r, KV))

    async def test_concurrent_writers_get_distinct_revisions(self, store: Store) -> None:
        kvs = await asyncio.gather(*(store.create(f"/par/k{i}", b"v") for i in range(100)))
        revs = sorted(kv.mod_revision for kv in kvs)
        assert revs == list(range(revs[0], revs[0] + 100))
        assert await store.current_revision() == revs[-1]

    async def test_watch_from_a_future_revision_waits_for_it(self, store: Store) -> None:
        now = await store.current_revision()
        async with store.watch("/f/", from_revision=now + 2) as it:
            for key in ("/f/a", "/f/b", "/f/c"):
                await store.create(key, b"v")
            events = await take(it, 1)
            assert [(e.kv.key, e.revision) for e in events] == [("/f/c", now + 3)]
            assert await nothing_more(it, 0.2)

    async def test_non_ascii_keys_sort_and_list_by_code_point(self, store: Store) -> None:
        rev0 = await store.current_revision()
        for key in ["/u/z", "/u/é", "/u/a", "/u/日本", "/v/x"]:
            await store.create(key, key.encode())
        kvs, _ = await store.list("/u/")
        assert [kv.key for kv in kvs] == ["/u/a", "/u/z", "/u/é", "/u/日本"]
        async with store.watch("/u/é", from_revision=rev0) as it:
            assert [e.kv.key for e in await take(it, 1)] == ["/u/é"]

    async def test_a_watch_from_a_revision_beyond_any_disturbs_no_writer(self,
                                                                         store: Store) -> None:
        """A watch from the largest uint64 revision (the API lets it through) reads nothing, and
        writers committing beside it all succeed (SQLite once failed them all with its
        catch-up's OverflowError in their group commit)."""
        it = store.watch("/h/", from_revision=2**64 - 1)
        reader = asyncio.ensure_future(anext(it))
        try:
            created = await asyncio.gather(*(store.create(f"/h/{i}", b"v") for i in range(50)),
                                           return_exceptions=True)
            assert [c for c in created if not isinstance(c, KV)] == []
            await asyncio.sleep(0.2)
            assert not reader.done() or reader.exception() is not None
        finally:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
            await it.aclose()                                  # type: ignore[attr-defined]
        kvs, _ = await store.list("/h/")
        assert len(kvs) == 50
