"""The `Store` protocol: a revisioned key-value store with watch, shaped like etcd v3.

Every write bumps one global revision. A key remembers the revision that created it
(`create_revision`) and the one that last changed it (`mod_revision`); the object layer uses
`mod_revision` as the Kubernetes resourceVersion. Values are opaque bytes (JSON of the object).
Watches deliver every change after a revision, in revision order, with no gaps; asking for a
revision older than the compaction point raises `Gone`.

Errors: `control.errors.AlreadyExists` (create of an existing key), `NotFound` (update/delete of
a missing key), `Conflict` (expected revision differs), `Gone` (compacted). Messages name the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Protocol, Self, runtime_checkable


@dataclass(frozen=True, slots=True)
class KV:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int


@dataclass(frozen=True, slots=True)
class StoreEvent:
    """One change. For PUT, `kv` is the new value and `prev` the old one (None if created).
    For DELETE, `kv.value` is the last value and `kv.mod_revision` the revision of the delete;
    `prev` is the last version as it was (its own mod_revision). Every backend fills `prev`,
    in live events and in replayed history alike."""
    type: Literal["PUT", "DELETE"]
    kv: KV
    prev: KV | None = None

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


class Watch(Protocol):
    """What `Store.watch` returns: an async iterator of events that can also be closed
    (`await w.aclose()`, `async with store.watch(...) as w:` or `contextlib.aclosing`)."""

    def __aiter__(self) -> Self: ...

    async def __anext__(self) -> StoreEvent: ...

    async def aclose(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None: ...


@runtime_checkable
class Store(Protocol):
    async def get(self, key: str) -> KV | None:
        """The current value of key, or None."""

    async def list(self, prefix: str, *, start_after: str | None = None,
                   limit: int = 0) -> tuple[list[KV], int]:
        """Keys starting with prefix, sorted by key, after `start_after` (exclusive), at most
        `limit` (0 = all), and the store's current revision (taken atomically with the read)."""

    async def create(self, key: str, value: bytes) -> KV:
        """Create key; AlreadyExists if it exists."""

    async def update(self, key: str, value: bytes, *, expected_revision: int | None = None) -> KV:
        """Replace key's value; NotFound if missing; Conflict if `expected_revision` is given and
        differs from the key's mod_revision."""

    async def delete(self, key: str, *, expected_revision: int | None = None) -> KV:
        """Delete key and return its last value (with `mod_revision` = the revision of the delete,
        as in the DELETE event); NotFound if missing; Conflict as for update."""

    def watch(self, prefix: str, *, from_revision: int) -> Watch:
        """Every change to keys under prefix with revision > from_revision, in order, forever.
        Gone (raised by the first `__anext__`) if from_revision < the compacted revision.
        The result also has `aclose()` and works as `async with`; cancelling a pending
        `__anext__` (e.g. `asyncio.wait_for(anext(w), t)`) leaves the stream usable. Stop it by
        `aclose()`, cancelling its reader, or dropping it; the stream ends (StopAsyncIteration)
        when the store closes."""

    async def current_revision(self) -> int:
        ...

    async def compact(self, revision: int) -> None:
        """Forget history at and below revision (watches from below it get Gone). A revision at
        or below the compacted one is a no-op; one above the current revision is ValueError."""

    async def close(self) -> None:
        ...
