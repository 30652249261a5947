"""The SQLite store passes the Store contract, and keeps everything acknowledged across restarts."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path

import pytest
from store_contract import StoreContract, take

from control.errors import Gone
from control.store._sqlite_db import SqliteDb
from control.store.base import KV
from control.store.sqlite import SqliteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(str(tmp_path / "knet.db"))
    yield s
    await s.close()


class TestSqliteStore(StoreContract):
    pass


async def test_restart_loses_nothing_acknowledged(tmp_path: Path) -> None:
    path = str(tmp_path / "state" / "knet.db")
    s = SqliteStore(path)
    rev0 = await s.current_revision()
    await asyncio.gather(*(s.create(f"/r/k{i:03d}", b"%d" % i) for i in range(200)))
    await s.update("/r/k000", b"changed")
    gone = await s.delete("/r/k001")
    last = await s.current_revision()
    await s.close()

    s = SqliteStore(path)
    try:
        assert await s.current_revision() == last
        kvs, rev = await s.list("/r/")
        assert rev == last and len(kvs) == 199
        assert (await s.get("/r/k000")).value == b"changed"  # type: ignore[union-attr]
        async with aclosing(s.watch("/r/", from_revision=rev0)) as it:
            events = await take(it, 202)
        assert [e.revision for e in events] == list(range(rev0 + 1, last + 1))
        assert events[-1].type == "DELETE" and events[-1].kv == gone
        nxt = await s.create("/r/after", b"v")
        assert nxt.mod_revision == last + 1
    finally:
        await s.close()


async def test_compaction_survives_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "knet.db")
    s = SqliteStore(path)
    await s.create("/c/a", b"1")
    await s.update("/c/a", b"2")
    await s.create("/c/gone", b"x")
    mark = (await s.delete("/c/gone")).mod_revision
    await s.compact(mark)
    await s.close()
    s = SqliteStore(path)
    try:
        assert await s.current_revision() == mark
        with pytest.raises(Gone):
            async with aclosing(s.watch("/c/", from_revision=1)) as it:
                await take(it, 1)
        kvs, _ = await s.list("/c/")
        assert [(kv.key, kv.value) for kv in kvs] == [("/c/a", b"2")]
        assert (await s.create("/c/b", b"1")).mod_revision == mark + 1
    finally:
        await s.close()


async def test_history_beyond_max_history_is_compacted(tmp_path: Path) -> None:
    s = SqliteStore(str(tmp_path / "knet.db"), max_history=10)
    try:
        for i in range(30):
            await s.update(f"/h/{i % 3}", b"v") if i >= 3 else await s.create(f"/h/{i}", b"v")
        with pytest.raises(Gone):
            async with aclosing(s.watch("/h/", from_revision=0)) as it:
                await take(it, 1)
        async with aclosing(s.watch("/h/", from_revision=25)) as it:
            assert [e.revision for e in await take(it, 5)] == [26, 27, 28, 29, 30]
    finally:
        await s.close()


async def test_a_second_process_cannot_open_the_same_file(tmp_path: Path) -> None:
    path = str(tmp_path / "knet.db")
    s = SqliteStore(path)
    try:
        code = ("import sys; from control.store.sqlite import SqliteStore\n"
                "try:\n    SqliteStore(sys.argv[1])\n"
                "except RuntimeError as e:\n    print(e); sys.exit(3)\n")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, path, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=dict(os.environ))
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 3, err.decode()
        assert "in use by another process" in out.decode() and path in out.decode()
    finally:
        await s.close()


CHILD = """
import asyncio, sys
from control.store._sqlite_db import SqliteDb
from control.store.base import KV
from control.store.sqlite import SqliteStore

async def main() -> None:
    s = SqliteStore(sys.argv[1])
    async def writer(w: int) -> None:
        for i in range(100000):
            kv = await s.create(f"/crash/w{w}/k{i:06d}", b"v")
            print(kv.key, kv.mod_revision, flush=True)
    await asyncio.gather(*(writer(w) for w in range(4)))

asyncio.run(main())
"""


async def test_a_killed_process_loses_nothing_it_acknowledged(tmp_path: Path) -> None:
    path = str(tmp_path / "knet.db")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, path, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    acked: dict[str, int] = {}
    assert proc.stdout is not None
    try:
        while len(acked) < 300:
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert line, (await proc.stderr.read()).decode()  # type: ignore[union-attr]
            key, rev = line.decode().split()
            acked[key] = int(rev)
    finally:
        proc.kill()  # SIGKILL mid-stream: no close, no flush
        await proc.wait()
    s = SqliteStore(path)
    try:
        for key, rev in acked.items():
            kv = await s.get(key)
            assert kv is not None and kv.mod_revision == rev, key
        assert await s.current_revision() >= max(acked.values())
    finally:
        await s.close()


def test_an_unusable_path_is_an_error_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("not a directory")
    with pytest.raises(RuntimeError, match=r"afile/knet.db: cannot open it"):
        SqliteStore(str(blocker / "knet.db"))
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(RuntimeError, match=r"junk.db: cannot use it .*knet store file"):
        SqliteStore(str(junk))


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
async def test_one_failing_operation_in_a_group_commit_fails_only_its_caller(
        tmp_path: Path, synchronous: str) -> None:
    """An operation that raises after writing (not a refusal: a bug, a driver error) is undone
    alone; the writers committed in the same transaction all succeed."""
    s = SqliteStore(str(tmp_path / "knet.db"), synchronous=synchronous)
    try:
        def half_written(db: SqliteDb) -> tuple[object, list[object]]:
            db.create("/b/half", b"partial")
            raise RuntimeError("boom after a write")

        rev0 = await s.current_revision()
        results = await asyncio.gather(
            *(s.create(f"/b/{i}", b"v") for i in range(10)),
            s._call(half_written),                             # type: ignore[arg-type]
            *(s.create(f"/b/{i}", b"v") for i in range(10, 20)), return_exceptions=True)
        assert isinstance(results[10], RuntimeError)
        good = results[:10] + results[11:]
        assert [r for r in good if not isinstance(r, KV)] == []
        assert sorted(r.mod_revision for r in good) == list(range(rev0 + 1, rev0 + 21))  # type: ignore[union-attr]
        assert await s.get("/b/half") is None
        kvs, rev = await s.list("/b/")
        assert len(kvs) == 20 and rev == rev0 + 20
    finally:
        await s.close()
    reopened = SqliteStore(str(tmp_path / "knet.db"))          # and so it is on disk
    try:
        assert await reopened.get("/b/half") is None
        assert len((await reopened.list("/b/"))[0]) == 20
    finally:
        await reopened.close()


async def test_database_files_are_private(tmp_path: Path) -> None:
    """state.db and its -wal and -shm files are 0600 whatever the umask (finding: 0644)."""
    old = os.umask(0o022)
    try:
        s = SqliteStore(str(tmp_path / "state.db"))
        await s.create("/r/a", b"1")
        names = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("state.db"))
        assert {"state.db", "state.db-wal", "state.db-shm"} <= set(names)
        for name in names:
            assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name
        await s.close()
    finally:
        os.umask(old)
