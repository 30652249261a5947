"""Small pieces the store backends share: prefix ranges, the errors of the contract, and
`KeyIndex`, the sorted in-memory map of current values behind MemoryStore and SqliteStore's reads.

Keeping the messages here makes all three backends say the same thing for the same fault:
the key, what was expected, and what to do about it.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

from control.errors import AlreadyExists, Conflict, Gone, NotFound
from control.store.base import KV

if TYPE_CHECKING:
    from control.store._watch import WatchHub


def prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with prefix (None: no bound)."""
    chars = list(prefix)
    while chars:
        last = ord(chars[-1])
        if last < 0x10FFFF:
            chars[-1] = chr(last + 1)
            return "".join(chars)
        chars.pop()
    return None


def already_exists(key: str) -> AlreadyExists:
    return AlreadyExists(f"key {key!r} already exists; update it or delete it first")


def check_current(key: str, old: KV | None, expected: int | None, verb: str) -> KV:
    """The current KV if an update/delete of key may go ahead, else NotFound or Conflict."""
    if old is None:
        raise NotFound(f"key {key!r} not found; cannot {verb} it (create it first)")
    if expected is not None and expected != old.mod_revision:
        raise Conflict(f"key {key!r}: {verb} expected revision {expected} but it is at "
                       f"revision {old.mod_revision}; read it again and retry")
    return old


def gone(prefix: str, after: int, compacted: int | None) -> Gone:
    upto = f"up to revision {compacted} " if compacted is not None else ""
    return Gone(f"watch on prefix {prefix!r} from revision {after}: history {upto}has been "
                f"compacted; re-list and watch from the revision the list returns")


def compact_too_far(revision: int, current: int) -> ValueError:
    return ValueError(f"cannot compact at revision {revision}: the store is only at "
                      f"revision {current}")


class KeyIndex:
    """Current value of every live key, with keys kept sorted for prefix listing."""

    def __init__(self) -> None:
        self._data: dict[str, KV] = {}
        self._keys: list[str] = []

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str) -> KV | None:
        return self._data.get(key)

    def load(self, kvs: list[KV]) -> None:
        """Replace the contents (kvs in any order)."""
        self._data = {kv.key: kv for kv in kvs}
        self._keys = sorted(self._data)

    def put(self, kv: KV) -> None:
        if kv.key not in self._data:
            bisect.insort(self._keys, kv.key)
        self._data[kv.key] = kv

    def remove(self, key: str) -> None:
        if self._data.pop(key, None) is not None:
            del self._keys[bisect.bisect_left(self._keys, key)]

    def list(self, prefix: str, start_after: str | None, limit: int) -> list[KV]:
        keys, data = self._keys, self._data
        if start_after is not None and start_after >= prefix:
            i = bisect.bisect_right(keys, start_after)
        else:
            i = bisect.bisect_left(keys, prefix)
        end = len(keys)
        if limit > 0:
            end = min(end, i + limit)
        out: list[KV] = []
        for key in keys[i:end]:
            if not key.startswith(prefix):
                break
            out.append(data[key])
        return out


class IndexedReads:
    """The reads of a store whose current values live in a `KeyIndex` (memory and SQLite):
    get, list and current_revision answer from memory; subclasses set `_index`, `_rev` and
    `_hub` (a `control.store._watch.WatchHub`) and define `_check_open`."""

    _index: KeyIndex
    _rev: int
    _hub: WatchHub

    def _check_open(self) -> None:
        raise NotImplementedError

    @property
    def active_watches(self) -> int:
        """How many watch streams are open (for tests and metrics)."""
        return self._hub.count

    async def get(self, key: str) -> KV | None:
        self._check_open()
        return self._index.get(key)

    async def list(self, prefix: str, *, start_after: str | None = None,
                   limit: int = 0) -> tuple[list[KV], int]:
        self._check_open()
        return self._index.list(prefix, start_after, limit), self._rev

    async def current_revision(self) -> int:
        self._check_open()
        return self._rev
