"""`EtcdWatch`: one etcd v3 watch over the JSON gateway, as a `Store.watch` stream.

A pump task owned by the watch POSTs `/v3/watch` with `start_revision = from + 1` and
`prev_kv`, splits the newline-delimited JSON it streams back, and queues converted events in a
`_Feed`; `__anext__` only waits on that feed, so cancelling a reader loses nothing. etcd lets a
watch start exactly at the compacted revision, while the contract says Gone for anything below
it, so the pump first reads at `from` (which etcd refuses when compacted). If the stream breaks,
the pump reconnects (other endpoints too) from the last revision it saw, for up to `timeout`.
A reader `max_backlog` events behind pauses the pump: it drops the stream and re-watches from
its last queued revision once the reader has drained the queue (etcd keeps the history).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from typing import TYPE_CHECKING, Any

import aiohttp

from control.errors import Internal
from control.store._common import gone
from control.store._watch import DEFAULT_MAX_BACKLOG, StreamBase
from control.store.base import KV, StoreEvent

if TYPE_CHECKING:
    from control.store.etcd import EtcdStore

Json = dict[str, Any]
RETRY_PAUSE = 0.2


class _Resync(Exception):
    """The reader is `max_backlog` events behind: drop the stream, wait, re-watch from there."""


class _Feed:
    """Events from the pump to the reader; never holds a reference to the watch itself."""

    def __init__(self, after: int, *, max_backlog: int) -> None:
        self.after = after  # last revision queued
        self.max_backlog = max_backlog
        self.events: deque[StoreEvent] = deque()
        self.drained = asyncio.Event()
        self.error: BaseException | None = None
        self.done = False
        self._waiter: asyncio.Future[None] | None = None

    def push(self, event: StoreEvent) -> None:
        if len(self.events) >= self.max_backlog:
            raise _Resync  # etcd keeps the history: this event and the rest are read again
        if event.revision > self.after:
            self.after = event.revision
            self.events.append(event)
            self.drained.clear()
            self._wake()

    def pop(self) -> StoreEvent:
        event = self.events.popleft()
        if not self.events:
            self.drained.set()
        return event

    def finish(self, error: BaseException | None = None) -> None:
        if not self.done:
            self.done, self.error = True, error
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


class EtcdWatch(StreamBase):
    """What `EtcdStore.watch()` returns; same behaviour as the other stores' `WatchStream`."""

    def __init__(self, store: EtcdStore, prefix: str, *, from_revision: int,
                 max_backlog: int = DEFAULT_MAX_BACKLOG) -> None:
        self._store = store
        self._prefix = prefix
        self._feed = _Feed(from_revision, max_backlog=max_backlog)
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<EtcdWatch {self._prefix!r} after={self._feed.after} open={self.open}>"

    @property
    def open(self) -> bool:
        return self._task is not None and not self._task.done()

    async def __anext__(self) -> StoreEvent:
        feed = self._feed
        if self._task is None and not feed.done:
            self._task = asyncio.create_task(_pump(self._store, self._prefix, feed),
                                             name=f"etcd watch {self._prefix}")
        while not feed.events:
            if feed.done:
                if feed.error is not None:
                    raise feed.error
                raise StopAsyncIteration
            await feed.wait()
        return feed.pop()

    async def aclose(self) -> None:
        self._feed.events.clear()
        self._feed.finish()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def __del__(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()


async def _pump(store: EtcdStore, prefix: str, feed: _Feed) -> None:
    try:
        await store.ensure_not_compacted(prefix, feed.after)
        await _stream_with_retries(store, prefix, feed)
    except asyncio.CancelledError:
        feed.finish()
        raise
    except Exception as exc:  # noqa: BLE001 (handed to the reader)
        feed.finish(exc)


async def _stream_with_retries(store: EtcdStore, prefix: str, feed: _Feed) -> None:
    """Keep one watch stream going, from the next revision needed, until cancelled; Internal
    if no endpoint serves it for `store.timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + store.timeout
    failures: list[str] = []
    turn = 0
    while True:
        endpoint = store.endpoints[turn % len(store.endpoints)]
        try:
            if await _stream(store, endpoint, prefix, feed):
                deadline = loop.time() + store.timeout  # it served for a while: fresh budget
            failures.append(f"{endpoint}: watch stream ended")
        except _Resync:
            await feed.drained.wait()
            await store.ensure_not_compacted(prefix, feed.after)
            continue
        except (aiohttp.ClientError, TimeoutError) as exc:
            failures.append(f"{endpoint}: {exc or type(exc).__name__}")
        turn += 1
        if turn % len(store.endpoints) == 0:
            if loop.time() > deadline:
                raise Internal(f"etcd watch on prefix {prefix!r} lost at revision "
                               f"{feed.after} ({'; '.join(failures[-3:])}); check that etcd "
                               f"runs")
            await asyncio.sleep(RETRY_PAUSE)


async def _stream(store: EtcdStore, endpoint: str, prefix: str, feed: _Feed) -> bool:
    """Follow one HTTP watch stream until it ends; True if etcd accepted the watch."""
    body = {"create_request": {"key": store.key_of(prefix), "range_end": store.range_end(prefix),
                               "start_revision": str(feed.after + 1), "prev_kv": True}}
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=store.timeout)
    created = False
    async with store.session().post(endpoint + "/v3/watch", json=body, timeout=timeout) as resp:
        buf = bytearray()
        async for chunk in resp.content.iter_any():
            buf.extend(chunk)
            while (end := buf.find(b"\n")) >= 0:
                line = bytes(buf[:end])
                del buf[:end + 1]
                if line.strip():
                    created = _handle(store, prefix, feed, json.loads(line)) or created
    return created


def _handle(store: EtcdStore, prefix: str, feed: _Feed, msg: Json) -> bool:
    """Queue the events of one message; True if it says the watch was created."""
    if "error" in msg:
        raise Internal(f"etcd watch on prefix {prefix!r}: {msg.get('message') or msg['error']}")
    result: Json = msg.get("result") or {}
    if result.get("canceled"):
        if result.get("compact_revision"):
            raise gone(prefix, feed.after, int(result["compact_revision"]))
        raise Internal(f"etcd cancelled the watch on prefix {prefix!r}: "
                       f"{result.get('cancel_reason', 'no reason given')}")
    for ev in result.get("events") or []:
        feed.push(_event(store, ev))
    return bool(result.get("created"))


def _event(store: EtcdStore, ev: Json) -> StoreEvent:
    prev: KV | None = store.kv_from(ev["prev_kv"]) if ev.get("prev_kv") else None
    if ev.get("type") == "DELETE":
        kv = store.kv_from(ev["kv"], value=prev.value if prev else b"",
                           create_revision=prev.create_revision if prev else 0)
        return StoreEvent("DELETE", kv, prev)
    return StoreEvent("PUT", store.kv_from(ev["kv"]), prev)
