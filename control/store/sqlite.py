"""`SqliteStore`: the embedded default `Store`, one SQLite file in WAL mode.

`_sqlite_db.SqliteDb` does the SQL on one connection. Writers queue operations; everything
queued by the time the event loop gets round to it runs as one transaction (group commit),
then one delivery updates an in-memory index of current values (so get/list never touch the
database), feeds watchers, and then wakes the writers. So 50 concurrent writers cost a handful
of commits, and a write is acknowledged only once committed: with the default
`synchronous=NORMAL` a process crash loses nothing acknowledged (an OS crash or power loss may
lose the last transactions; pass `synchronous="FULL"` to rule that out too).
Key design choice: with NORMAL a commit only appends to the WAL (the `Checkpointer` thread does
the fsyncs), so batches run on the event loop itself, with no thread hand-offs or GIL
ping-pong per write; with FULL every commit waits for an fsync, so batches run on a dedicated
database thread instead and the loop keeps serving meanwhile.
One operation that fails unexpectedly fails only its own caller: the batch is rolled back and
run again with a savepoint around each operation (the happy path pays nothing for it).
The file is locked for the store's lifetime: a second process gets a clear error.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from control.errors import ApiError
from control.store._common import IndexedReads, KeyIndex
from control.store._sqlite_db import Checkpointer, SqliteDb
from control.store._watch import DEFAULT_MAX_BACKLOG, WatchHub, WatchStream
from control.store.base import KV, StoreEvent

log = logging.getLogger(__name__)

Result = tuple[Any, list[StoreEvent]]
_Op = tuple[Callable[[SqliteDb], Result], "asyncio.Future[Any]", asyncio.AbstractEventLoop]
_Delivery = list[tuple["asyncio.Future[Any]", bool, Any]]
_Batch = list[_Op]
Events = list[StoreEvent]  # (list is a method name in the class below)

DEFAULT_MAX_HISTORY = 200_000
CATCH_UP_PAGE = 1000
MAX_BATCH = 1000
OPEN_TIMEOUT = 30.0


class _OpFailed(Exception):
    """One operation of a batch failed in a way that may have left a partial write."""


class SqliteStore(IndexedReads):
    """A complete `Store` on one SQLite file; see `control.store.base.Store` for the contract.

    `max_history`: events kept for watch catch-up before automatic compaction. Current
    values are also held in memory (like the kube-apiserver's watch cache). Use one store from
    one event loop.
    """

    def __init__(self, path: str, *, synchronous: str = "NORMAL",
                 max_history: int = DEFAULT_MAX_HISTORY,
                 max_backlog: int = DEFAULT_MAX_BACKLOG) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"sqlite store {path}: synchronous must be NORMAL or FULL, "
                             f"not {synchronous!r}")
        self.path = path
        self._max_history = max_history
        self._hub = WatchHub(max_backlog=max_backlog)
        self._index = KeyIndex()  # current values, as of the last delivered commit
        self._rev = 0
        self._queue: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._closed = False
        self._open_error: BaseException | None = None
        self._pending: _Batch = []                # NORMAL: queued for the next loop turn
        self._db: SqliteDb | None = None          # NORMAL: the connection, used on the loop
        self._checkpointer: Checkpointer | None = None
        if synchronous == "NORMAL":
            self._db = self._open(synchronous)
            self._checkpointer = Checkpointer(path)
            return
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(synchronous, ready),
                                        name=f"sqlite-store {path}", daemon=True)
        self._thread.start()
        if not ready.wait(OPEN_TIMEOUT):
            raise TimeoutError(f"sqlite store {path}: opening took over {OPEN_TIMEOUT}s")
        if self._open_error is not None:
            raise self._open_error

    def __repr__(self) -> str:
        return f"<SqliteStore {self.path} watchers={self._hub.count}>"

    # -- the Store protocol --------------------------------------------------------------------

    async def create(self, key: str, value: bytes) -> KV:
        return await self._write(lambda db: db.create(key, bytes(value)))

    async def update(self, key: str, value: bytes, *, expected_revision: int | None = None) -> KV:
        return await self._write(lambda db: db.update(key, bytes(value), expected_revision))

    async def delete(self, key: str, *, expected_revision: int | None = None) -> KV:
        return await self._write(lambda db: db.delete(key, expected_revision))

    def watch(self, prefix: str, *, from_revision: int) -> WatchStream:
        self._check_open()

        async def catch_up(after: int) -> Events:
            return await self._call(  # type: ignore[no-any-return]
                lambda db: (db.events(prefix, after, CATCH_UP_PAGE), []))

        return WatchStream(self._hub, prefix, from_revision=from_revision, catch_up=catch_up)

    async def compact(self, revision: int) -> None:
        def op(db: SqliteDb) -> Result:
            db.compact(revision)
            return None, []
        await self._call(op)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._db is not None:
            self._flush()                         # what was asked before close still lands
            db, checkpointer, self._db = self._db, self._checkpointer, None
            if checkpointer is not None:
                await asyncio.get_running_loop().run_in_executor(None, checkpointer.stop)
            db.close()
        else:
            self._queue.put(None)
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        self._hub.close()

    # -- the loop side -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"sqlite store {self.path} is closed; open it again")

    async def _call(self, fn: Callable[[SqliteDb], Result]) -> Any:
        self._check_open()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        if self._db is None:
            self._queue.put((fn, fut, loop))
        else:
            self._pending.append((fn, fut, loop))
            if len(self._pending) == 1:
                loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        """NORMAL: run what is pending as one transaction (per MAX_BATCH) and deliver it."""
        batch, self._pending = self._pending, []
        db = self._db
        if not batch or db is None:
            for _, fut, _ in batch:
                if not fut.done():
                    fut.set_exception(RuntimeError(f"sqlite store {self.path} is closed"))
            return
        for start in range(0, len(batch), MAX_BATCH):
            self._deliver(*self._run_batch(db, batch[start:start + MAX_BATCH]))
        if self._checkpointer is not None:
            self._checkpointer.poke()
            if self._checkpointer.wal_too_long:
                self._checkpointer.wal_too_long = False
                db.restart_wal()

    async def _write(self, fn: Callable[[SqliteDb], tuple[KV, StoreEvent]]) -> KV:
        def op(db: SqliteDb) -> Result:
            kv, event = fn(db)
            return kv, [event]
        return await self._call(op)  # type: ignore[no-any-return]

    def _deliver(self, events: Events, results: _Delivery) -> None:
        index = self._index
        for event in events:
            if event.type == "DELETE":
                index.remove(event.kv.key)
            else:
                index.put(event.kv)
        if events:
            self._rev = events[-1].revision
        self._hub.publish(events)  # watchers first: a writer that returns has been seen
        for fut, ok, value in results:
            if fut.done():
                continue
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

    # -- the database thread -------------------------------------------------------------------

    def _open(self, synchronous: str) -> SqliteDb:
        db = SqliteDb(self.path, synchronous=synchronous)
        try:
            self._index.load(db.current())
            self._rev = db.rev
        except BaseException:
            db.close()
            raise
        log.info("%s: opened at revision %d (compacted %d)", self.path, db.rev, db.compacted)
        return db

    def _run(self, synchronous: str, ready: threading.Event) -> None:
        try:
            db = self._open(synchronous)
        except BaseException as exc:  # noqa: BLE001 (re-raised by the constructor)
            self._open_error = exc
            ready.set()
            return
        ready.set()
        checkpointer = Checkpointer(self.path)
        try:
            stop = False
            while not stop:
                batch, stop = self._take_batch()
                if batch:
                    self._post(batch[0][2], *self._run_batch(db, batch))
                    checkpointer.poke()
                    if checkpointer.wal_too_long:
                        checkpointer.wal_too_long = False
                        db.restart_wal()
        finally:
            checkpointer.stop()
            db.close()

    def _take_batch(self) -> tuple[_Batch, bool]:
        first = self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < MAX_BATCH:
            try:
                op = self._queue.get_nowait()
            except queue.Empty:
                break
            if op is None:
                return batch, True
            batch.append(op)
        return batch, False

    def _run_batch(self, db: SqliteDb, batch: _Batch) -> tuple[Events, _Delivery]:
        """One transaction for the batch. An operation that fails unexpectedly (mid-write,
        say) must fail alone: the transaction is rolled back and the batch run again with a
        savepoint around each operation, so only that caller gets the error."""
        try:
            return self._transaction(db, batch, isolated=False)
        except _OpFailed:
            db.rollback()
        except Exception as exc:  # noqa: BLE001 (nothing of this batch landed)
            return self._failed(db, batch, exc)
        try:
            return self._transaction(db, batch, isolated=True)
        except Exception as exc:  # noqa: BLE001 (every caller gets it)
            return self._failed(db, batch, exc)

    def _transaction(self, db: SqliteDb, batch: _Batch, *,
                     isolated: bool) -> tuple[Events, _Delivery]:
        results: _Delivery = []
        events: list[StoreEvent] = []
        db.begin()
        for fn, fut, _ in batch:
            try:
                if isolated:
                    value, evs = db.isolated(fn)
                else:
                    value, evs = fn(db)
            except (ApiError, ValueError) as exc:  # refused before writing anything
                results.append((fut, False, exc))
                continue
            except Exception as exc:
                if not isolated:
                    raise _OpFailed() from exc
                log.warning("%s: one operation failed alone: %r", self.path, exc)
                results.append((fut, False, exc))
                continue
            results.append((fut, True, value))
            events.extend(evs)
        if db.rev - db.compacted > self._max_history + self._max_history // 10:
            db.compact(db.rev - self._max_history)
        db.commit()
        return events, results

    def _failed(self, db: SqliteDb, batch: _Batch, exc: Exception) -> tuple[Events, _Delivery]:
        log.error("%s: transaction of %d operations failed: %r", self.path, len(batch), exc)
        db.rollback()
        return [], [(fut, False, exc) for _, fut, _ in batch]

    def _post(self, loop: asyncio.AbstractEventLoop, events: Events,
              results: _Delivery) -> None:
        try:
            loop.call_soon_threadsafe(self._deliver, events, results)
        except RuntimeError:  # the caller's loop is gone: nobody is waiting any more
            log.warning("%s: event loop closed; %d results dropped", self.path, len(results))
