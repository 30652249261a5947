"""`MemoryStore`: the in-memory `Store`, for unit tests and `memory://`.

Everything happens synchronously on the event loop. A watch subscribes to live events, then
takes its catch-up slice of history (the shared `WatchStream` drops the overlap). History is one list indexed by revision (revisions are contiguous), trimmed by `compact()` or
automatically beyond `max_history` events; watchers get events through a shared `WatchHub`.
"""

from __future__ import annotations

from control.store._common import (
    IndexedReads,
    KeyIndex,
    already_exists,
    check_current,
    compact_too_far,
    gone,
)
from control.store._watch import DEFAULT_MAX_BACKLOG, WatchHub, WatchStream
from control.store.base import KV, StoreEvent

DEFAULT_MAX_HISTORY = 200_000
CATCH_UP_PAGE = 1000
Events = list[StoreEvent]  # (list is a method name in the classes below)


class MemoryStore(IndexedReads):
    """A complete `Store` held in dicts; see `control.store.base.Store` for the contract."""

    def __init__(self, *, max_history: int = DEFAULT_MAX_HISTORY,
                 max_backlog: int = DEFAULT_MAX_BACKLOG) -> None:
        self._index = KeyIndex()
        self._rev = 0
        self._compacted = 0
        self._history: list[StoreEvent] = []  # revisions _compacted+1 .. _rev
        self._max_history = max_history
        self._hub = WatchHub(max_backlog=max_backlog)
        self._closed = False

    def __repr__(self) -> str:
        return (f"<MemoryStore rev={self._rev} keys={len(self._index)} "
                f"compacted={self._compacted} watchers={self._hub.count}>")

    async def create(self, key: str, value: bytes) -> KV:
        self._check_open()
        if self._index.get(key) is not None:
            raise already_exists(key)
        rev = self._rev + 1
        kv = KV(key, bytes(value), rev, rev)
        self._commit(StoreEvent("PUT", kv, None))
        return kv

    async def update(self, key: str, value: bytes, *, expected_revision: int | None = None) -> KV:
        self._check_open()
        old = self._current(key, expected_revision, "update")
        kv = KV(key, bytes(value), old.create_revision, self._rev + 1)
        self._commit(StoreEvent("PUT", kv, old))
        return kv

    async def delete(self, key: str, *, expected_revision: int | None = None) -> KV:
        self._check_open()
        old = self._current(key, expected_revision, "delete")
        kv = KV(key, old.value, old.create_revision, self._rev + 1)
        self._commit(StoreEvent("DELETE", kv, old))
        return kv

    def watch(self, prefix: str, *, from_revision: int) -> WatchStream:
        self._check_open()
        return WatchStream(self._hub, prefix, from_revision=from_revision,
                           catch_up=lambda after: self._catch_up(prefix, after))

    async def compact(self, revision: int) -> None:
        self._check_open()
        if revision > self._rev:
            raise compact_too_far(revision, self._rev)
        self._compact(revision)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._hub.close()

    # -- internals ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("memory store is closed; open a new one")

    def _current(self, key: str, expected_revision: int | None, verb: str) -> KV:
        return check_current(key, self._index.get(key), expected_revision, verb)

    async def _catch_up(self, prefix: str, after: int) -> Events:
        if after < self._compacted:
            raise gone(prefix, after, self._compacted)
        out: list[StoreEvent] = []
        history = self._history
        for i in range(max(after - self._compacted, 0), len(history)):
            if history[i].kv.key.startswith(prefix):
                out.append(history[i])
                if len(out) >= CATCH_UP_PAGE:
                    break
        return out

    def _commit(self, event: StoreEvent) -> None:
        self._rev = event.revision
        if event.type == "DELETE":
            self._index.remove(event.kv.key)
        else:
            self._index.put(event.kv)
        self._history.append(event)
        if len(self._history) > self._max_history + max(self._max_history // 10, 1):
            self._compact(self._rev - self._max_history)
        self._hub.publish([event])

    def _compact(self, revision: int) -> None:
        if revision <= self._compacted:
            return
        del self._history[:revision - self._compacted]
        self._compacted = revision
