"""The synchronous half of the SQLite store: one connection, the schema, and every operation.

The log is the truth: `log(rev, key, value, create_rev, prev_rev, deleted)` holds one row per
write (a delete is a tombstone whose value is its `prev_rev` row's), and `kv(key, rev,
create_rev)` indexes the current version of each live key into it, so a value is stored once.
Reads of current values are served by the store's in-memory index, filled by `current()`.
Compaction at C drops, for writes in (old C, C], the versions they superseded and the
tombstones themselves, exactly like etcd: the newest version at or below C of a live key stays,
so events above C can always name their previous value. The current revision is
max(max(log.rev), compacted). Everything here runs on the store's one database thread, except
the `Checkpointer`, which folds the WAL into the file on a second connection so that commits
never wait for an fsync. A `.lock` file next to the database keeps other processes out.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from control.store._common import already_exists, check_current, compact_too_far, gone, prefix_end
from control.store.base import KV, StoreEvent

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    rev INTEGER PRIMARY KEY, key TEXT NOT NULL, value BLOB, create_rev INTEGER NOT NULL,
    prev_rev INTEGER, deleted INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY, rev INTEGER NOT NULL, create_rev INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
"""

_GET = ("SELECT k.rev, k.create_rev, l.value FROM kv k JOIN log l ON l.rev = k.rev "
        "WHERE k.key = ?")
_ALL = ("SELECT k.key, l.value, k.create_rev, k.rev FROM kv k JOIN log l ON l.rev = k.rev")
_INDEX = "INSERT INTO kv (key, rev, create_rev) VALUES (?, ?, ?)"
_LOG = "INSERT INTO log (rev, key, value, create_rev, prev_rev, deleted) VALUES (?, ?, ?, ?, ?, ?)"
_EVENTS = ("SELECT l.rev, l.key, l.value, l.create_rev, l.deleted, p.rev, p.value, p.create_rev "
           "FROM log l LEFT JOIN log p ON p.rev = l.prev_rev "
           "WHERE l.rev > ? AND l.key >= ? AND l.key < ? ORDER BY l.rev LIMIT ?")
_EVENTS_NO_END = ("SELECT l.rev, l.key, l.value, l.create_rev, l.deleted, p.rev, p.value, "
                  "p.create_rev FROM log l LEFT JOIN log p ON p.rev = l.prev_rev "
                  "WHERE l.rev > ? AND l.key >= ? ORDER BY l.rev LIMIT ?")

Events = list[StoreEvent]
Kvs = list[KV]
_R = TypeVar("_R")


class StoreUnavailable(RuntimeError):
    """The database file cannot be opened or used."""


class StoreLocked(StoreUnavailable):
    """Another process holds the database file."""


def private_files(path: str) -> None:
    """The database 0600 before SQLite opens it (its -wal and -shm files take the mode of
    the database), and those of an older knet made so too."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for suffix in ("", "-wal", "-shm"):
        try:
            os.chmod(path + suffix, 0o600)
        except FileNotFoundError:
            pass


def lock_file(path: str) -> int:
    """Hold `path.lock` (flock) for the store's lifetime; StoreLocked if another process does.
    A separate file, because closing any other descriptor of the database itself would drop
    SQLite's own POSIX locks. The kernel releases it if the process dies."""
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreLocked(f"sqlite store {path}: the file is in use by another process "
                          f"(another 'knet control'?); stop it or use another state "
                          f"directory") from None
    return fd


class SqliteDb:
    """Thread-confined: create, use and close it on one thread only."""

    def __init__(self, path: str, *, synchronous: str = "NORMAL") -> None:
        self.path = path
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._lock = lock_file(path)
            private_files(path)
        except OSError as exc:
            raise StoreUnavailable(f"sqlite store {path}: cannot open it ({exc}); check that "
                                   f"its directory is writable or pick another") from exc
        try:
            self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=True,
                                        timeout=5, cached_statements=64)
            self._setup(synchronous)
        except sqlite3.Error as exc:
            os.close(self._lock)
            raise StoreUnavailable(f"sqlite store {path}: cannot use it ({exc}); is it a "
                                   f"knet store file?") from exc
        self.compacted = self._meta("compacted")
        (top,) = self.conn.execute("SELECT COALESCE(MAX(rev), 0) FROM log").fetchone()
        self.rev: int = max(int(top), self.compacted)

    def _setup(self, synchronous: str) -> None:
        c = self.conn
        c.execute("PRAGMA journal_mode=WAL")
        c.execute(f"PRAGMA synchronous={synchronous}")
        c.execute("PRAGMA temp_store=MEMORY")
        c.execute("PRAGMA cache_size=-65536")  # 64 MiB of page cache
        c.execute("PRAGMA wal_autocheckpoint=0")  # the Checkpointer does it, off the write path
        c.execute("PRAGMA journal_size_limit=67108864")
        c.executescript(SCHEMA)

    def _meta(self, name: str) -> int:
        row = self.conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def restart_wal(self) -> None:
        """Finish the checkpoint and make the next commit write the WAL from its start."""
        try:
            self.conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
        except sqlite3.Error as exc:  # the WAL just stays longer; tried again later
            log.warning("%s: WAL restart failed: %s", self.path, exc)

    def close(self) -> None:
        try:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self.conn.close()
            os.close(self._lock)

    # -- transactions (the async side groups several operations into one) -------------------

    def begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def isolated(self, fn: Callable[[SqliteDb], _R]) -> _R:
        """fn(self) inside a savepoint: if it raises, what it wrote is undone (and raised)."""
        rev = self.rev
        self.conn.execute("SAVEPOINT op")
        try:
            out = fn(self)
        except BaseException:
            self.conn.execute("ROLLBACK TO op")
            self.conn.execute("RELEASE op")
            self.rev = rev
            raise
        self.conn.execute("RELEASE op")
        return out

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        (top,) = self.conn.execute("SELECT COALESCE(MAX(rev), 0) FROM log").fetchone()
        self.compacted = self._meta("compacted")
        self.rev = max(int(top), self.compacted)

    # -- reads ---------------------------------------------------------------------------------

    def get(self, key: str) -> KV | None:
        row = self.conn.execute(_GET, (key,)).fetchone()
        return KV(key, row[2], row[1], row[0]) if row else None

    def current(self) -> Kvs:
        """Every live key's current value (to fill the store's in-memory index at open)."""
        return [KV(r[0], r[1], r[2], r[3]) for r in self.conn.execute(_ALL)]

    def events(self, prefix: str, after: int, limit: int) -> Events:
        """Events under prefix with revision > after, oldest first; Gone if compacted."""
        if after < self.compacted:
            raise gone(prefix, after, self.compacted)
        if after >= self.rev:             # nothing yet (and no SQL for a revision of 2**64)
            return []
        end = prefix_end(prefix)
        if end is None:
            rows = self.conn.execute(_EVENTS_NO_END, (after, prefix, limit))
        else:
            rows = self.conn.execute(_EVENTS, (after, prefix, end, limit))
        out: list[StoreEvent] = []
        for rev, key, value, create_rev, deleted, p_rev, p_value, p_create in rows:
            prev = KV(key, p_value, p_create, p_rev) if p_rev is not None else None
            if deleted:
                out.append(StoreEvent("DELETE", KV(key, p_value, create_rev, rev), prev))
            else:
                out.append(StoreEvent("PUT", KV(key, value, create_rev, rev), prev))
        return out

    # -- writes (inside begin()/commit()) ------------------------------------------------------

    def create(self, key: str, value: bytes) -> tuple[KV, StoreEvent]:
        rev = self.rev + 1
        try:  # the primary key refuses an existing key: no separate lookup
            self.conn.execute(_INDEX, (key, rev, rev))
        except sqlite3.IntegrityError:
            raise already_exists(key) from None
        self.conn.execute(_LOG, (rev, key, value, rev, None, 0))
        self.rev = rev
        kv = KV(key, value, rev, rev)
        return kv, StoreEvent("PUT", kv, None)

    def update(self, key: str, value: bytes, expected: int | None) -> tuple[KV, StoreEvent]:
        old = self._current(key, expected, "update")
        rev = self.rev + 1
        self.conn.execute(_LOG, (rev, key, value, old.create_revision, old.mod_revision, 0))
        self.conn.execute("UPDATE kv SET rev = ? WHERE key = ?", (rev, key))
        self.rev = rev
        kv = KV(key, value, old.create_revision, rev)
        return kv, StoreEvent("PUT", kv, old)

    def delete(self, key: str, expected: int | None) -> tuple[KV, StoreEvent]:
        old = self._current(key, expected, "delete")
        rev = self.rev + 1
        self.conn.execute(_LOG, (rev, key, None, old.create_revision, old.mod_revision, 1))
        self.conn.execute("DELETE FROM kv WHERE key = ?", (key,))
        self.rev = rev
        kv = KV(key, old.value, old.create_revision, rev)
        return kv, StoreEvent("DELETE", kv, old)

    def _current(self, key: str, expected: int | None, verb: str) -> KV:
        return check_current(key, self.get(key), expected, verb)

    def compact(self, revision: int) -> None:
        if revision > self.rev:
            raise compact_too_far(revision, self.rev)
        old = self.compacted
        if revision <= old:
            return
        c = self.conn
        c.execute("DELETE FROM log WHERE rev IN (SELECT prev_rev FROM log WHERE rev > ? AND "
                  "rev <= ? AND prev_rev IS NOT NULL)", (old, revision))
        c.execute("DELETE FROM log WHERE rev > ? AND rev <= ? AND deleted = 1", (old, revision))
        c.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('compacted', ?)",
                  (revision,))
        self.compacted = revision


class Checkpointer:
    """Copies the WAL back into the database on its own connection and thread, so that no
    commit ever waits for a checkpoint's fsync (SQLite lets a PASSIVE checkpoint run beside a
    writer). `poke()` after each commit; it checkpoints at most every `interval` seconds."""

    def __init__(self, path: str, *, interval: float = 0.5,
                 max_wal_frames: int = 16384) -> None:
        self.path = path
        self.interval = interval
        self.max_wal_frames = max_wal_frames
        # Set when the WAL keeps growing (writes never pause long enough for it to be reset):
        # the writer then runs one RESTART checkpoint itself (SqliteDb.restart_wal).
        self.wal_too_long = False
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sqlite-checkpoint {path}",
                                        daemon=True)
        self._thread.start()

    def poke(self) -> None:
        self._dirty.set()

    def stop(self) -> None:
        self._stopping.set()
        self._dirty.set()
        self._thread.join()

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=5)
        try:
            while True:
                self._dirty.wait()
                if self._stopping.is_set():
                    return
                self._dirty.clear()
                try:
                    _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.wal_too_long = frames > self.max_wal_frames
                except sqlite3.Error as exc:  # retried on the next poke
                    log.warning("%s: checkpoint failed: %s", self.path, exc)
                self._stopping.wait(self.interval)
        finally:
            conn.close()
