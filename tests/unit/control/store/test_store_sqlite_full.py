"""The SQLite store with synchronous=FULL (batches on its database thread, not on the event
loop) passes the same Store contract, and keeps what it acknowledged across a restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from store_contract import StoreContract

from control.store.sqlite import SqliteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(str(tmp_path / "knet.db"), synchronous="FULL")
    yield s
    await s.close()


class TestSqliteStoreFull(StoreContract):
    pass


async def test_full_and_normal_read_each_others_files(tmp_path: Path) -> None:
    path = str(tmp_path / "knet.db")
    s = SqliteStore(path, synchronous="FULL")
    kv = await s.create("/registry/pods/a/p", b'{"x":1}')
    await s.close()
    s = SqliteStore(path)
    assert (await s.get("/registry/pods/a/p")) == kv
    kv2 = await s.update("/registry/pods/a/p", b'{"x":2}', expected_revision=kv.mod_revision)
    await s.close()
    s = SqliteStore(path, synchronous="FULL")
    assert (await s.get("/registry/pods/a/p")) == kv2
    assert await s.current_revision() == kv2.mod_revision
    await s.close()
