"""Fan-out of store events to watchers, shared by the memory and SQLite stores.

A `WatchHub` lives on the event loop. Writers `publish()` committed events in revision order;
each `Subscription` gets them appended to its own deque and its waiter woken, so one event costs
one `startswith` per distinct watched prefix plus one append per matching watcher (no per-event
task, no queue object). A subscriber that falls more than `max_backlog` events behind drops its
buffer and its `WatchStream` re-reads from the store's history, so memory stays bounded; only if
that history was compacted meanwhile does the reader get `Gone` (and re-lists, as in Kubernetes).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

from control.store.base import StoreEvent

DEFAULT_MAX_BACKLOG = 100_000


class Overflow(Exception):
    """A subscription dropped events: its reader must catch up from history again."""


class Subscription:
    """One watcher's live feed. Iterate with `next_batch()`; always `hub.unsubscribe()` it."""

    __slots__ = ("_closed", "_max_backlog", "_overflowed", "_pending", "_waiter", "prefix")

    def __init__(self, prefix: str, *, max_backlog: int) -> None:
        self.prefix = prefix
        self._pending: deque[StoreEvent] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._overflowed = False
        self._closed = False
        self._max_backlog = max_backlog

    def push(self, event: StoreEvent) -> None:
        if self._overflowed or self._closed:
            return
        if len(self._pending) >= self._max_backlog:
            self._pending.clear()  # the stream re-reads them from history
            self._overflowed = True
        else:
            self._pending.append(event)
        self._wake()

    def end(self) -> None:
        """The store is closing: the feed ends after what is already queued."""
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next_batch(self) -> list[StoreEvent]:
        """Everything queued so far (waiting if nothing is); [] once the store is closed.
        Raises `Overflow` if events were dropped because the reader fell too far behind."""
        while not self._pending:
            if self._overflowed:
                raise Overflow(self.prefix)
            if self._closed:
                return []
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self._overflowed:
            raise Overflow(self.prefix)
        batch = list(self._pending)
        self._pending.clear()
        return batch


class WatchHub:
    """Subscriptions indexed by prefix; `publish` delivers to every matching one."""

    def __init__(self, *, max_backlog: int = DEFAULT_MAX_BACKLOG) -> None:
        self._by_prefix: dict[str, set[Subscription]] = {}
        self._max_backlog = max_backlog

    @property
    def count(self) -> int:
        return sum(len(s) for s in self._by_prefix.values())

    def subscribe(self, prefix: str) -> Subscription:
        sub = Subscription(prefix, max_backlog=self._max_backlog)
        self._by_prefix.setdefault(prefix, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._by_prefix.get(sub.prefix)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self._by_prefix[sub.prefix]

    def publish(self, events: list[StoreEvent]) -> None:
        if not self._by_prefix:
            return
        for event in events:
            key = event.kv.key
            for prefix, subs in self._by_prefix.items():
                if key.startswith(prefix):
                    for sub in subs:
                        sub.push(event)

    def close(self) -> None:
        for subs in self._by_prefix.values():
            for sub in subs:
                sub.end()
        self._by_prefix.clear()


CatchUp = Callable[[int], Awaitable[list[StoreEvent]]]


class StreamBase:
    """The iterator and context-manager plumbing every backend's watch stream shares."""

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> StoreEvent:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()


class WatchStream(StreamBase):
    """What `watch()` returns for hub-fed stores: an async iterator of `StoreEvent`.

    On first use it subscribes to the hub, then pages through history with `catch_up(after)`
    (events after a revision, under the prefix, oldest first; [] once caught up; may raise Gone),
    then serves live events, skipping any revision already delivered, so the seam between history
    and live has neither gap nor duplicate. Cancelling a pending `__anext__` loses nothing (the
    stream stays usable); `aclose()` (or `async with`, or dropping it) releases the subscription.
    """

    def __init__(self, hub: WatchHub, prefix: str, *, from_revision: int,
                 catch_up: CatchUp) -> None:
        self._hub = hub
        self._prefix = prefix
        self._last = from_revision
        self._catch_up_fn = catch_up
        self._catch_up: CatchUp | None = catch_up
        self._sub: Subscription | None = None
        self._ready: deque[StoreEvent] = deque()
        self._done = False

    def __repr__(self) -> str:
        return f"<WatchStream {self._prefix!r} after={self._last} done={self._done}>"

    async def __anext__(self) -> StoreEvent:
        while not self._ready:
            if self._done:
                raise StopAsyncIteration
            await self._fill()
        event = self._ready.popleft()
        self._last = event.revision
        return event

    async def _fill(self) -> None:
        if self._sub is None:
            self._sub = self._hub.subscribe(self._prefix)
        try:
            if self._catch_up is not None:
                page = await self._catch_up(self._last)
                if not page:
                    self._catch_up = None
                self._ready.extend(page)
                return
            batch = await self._sub.next_batch()
        except Overflow:
            self._hub.unsubscribe(self._sub)
            self._sub = None
            self._catch_up = self._catch_up_fn
            return
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                self._finish()
            raise
        if not batch:
            self._finish()
        last = self._last
        self._ready.extend(e for e in batch if e.revision > last)

    def _finish(self) -> None:
        self._done = True
        if self._sub is not None:
            self._hub.unsubscribe(self._sub)
            self._sub = None

    async def aclose(self) -> None:
        self._ready.clear()
        self._finish()

    def __del__(self) -> None:
        if self._sub is not None:
            self._hub.unsubscribe(self._sub)
