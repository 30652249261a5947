"""Watches of the object layer: store events turned into Kubernetes watch events.

Without a resourceVersion (or with "0") the current state comes first as ADDED events, then
the changes after the list's revision. Events stay raw (`RawEvent`: stored bytes + revision)
until someone needs a dict, so an unfiltered HTTP watch never parses JSON. With a selector, an object that starts matching is
ADDED, one that stops matching is DELETED (carrying its new state), as the kube-apiserver's
watch cache does. A revision below the store's compaction raises `Gone`.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from control.api import meta
from control.api.meta import Obj
from control.clientbase import WatchEvent
from control.models.resources import ResourceInfo
from control.store.base import StoreEvent

if TYPE_CHECKING:
    from control.api.objects import ObjectService

Match = Callable[[Obj], bool] | None
WatchType = Literal["ADDED", "MODIFIED", "DELETED"]


@dataclass(frozen=True, slots=True)
class RawEvent:
    """A watch event still in stored form: framed for HTTP without a decode/encode round
    trip (`frame`), decoded only for callers that want the dict (`object`)."""
    type: WatchType
    value: bytes
    revision: int
    decoded: Obj | None = None

    def object(self) -> Obj:
        return self.decoded if self.decoded is not None else meta.decode_at(self.value,
                                                                             self.revision)

    def frame(self) -> bytes:
        return _frame(self.type, self.value, self.revision)


@functools.lru_cache(maxsize=64)
def _frame(kind: str, value: bytes, revision: int) -> bytes:
    """One event's NDJSON line, built once and shared by every watcher that gets it (the
    stored bytes object is the same for all of them, and caches its own hash)."""
    obj = meta.with_revision(value, revision)
    return b'{"type":"%s","object":%s}\n' % (kind.encode(), obj)


async def watch(svc: ObjectService, info: ResourceInfo, *, namespace: str | None,
                match: Match, resource_version: str | None) -> AsyncIterator[WatchEvent]:
    async for event in watch_raw(svc, info, namespace=namespace, match=match,
                                 resource_version=resource_version):
        yield WatchEvent(event.type, event.object())


@dataclass
class Progress:
    """The store revision a watch has seen everything up to, filtered-out events included
    (what a BOOKMARK may announce)."""
    revision: int = 0


async def watch_raw(svc: ObjectService, info: ResourceInfo, *, namespace: str | None,
                    match: Match, resource_version: str | None,
                    progress: Progress | None = None) -> AsyncIterator[RawEvent]:
    prefix = info.prefix(namespace)
    progress = progress or Progress()
    if resource_version in (None, "", "0"):
        kvs, revision = await svc.store.list(prefix)
        for kv in kvs:
            obj = meta.decode(kv) if match is not None else None
            if match is None or match(obj):             # type: ignore[arg-type]
                yield RawEvent("ADDED", kv.value, kv.mod_revision, obj)
    else:
        revision = meta.parse_revision(resource_version)
    progress.revision = revision
    stream = svc.store.watch(prefix, from_revision=revision)
    try:
        async for event in stream:
            progress.revision = event.revision
            out = translate(event, match)
            if out is not None:
                yield out
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()


def translate(event: StoreEvent, match: Match) -> RawEvent | None:
    """One store event as the watch event a client with this filter should see, or None."""
    kv = event.kv
    if match is None:
        kind: WatchType = ("DELETED" if event.type == "DELETE"
                           else "ADDED" if event.prev is None else "MODIFIED")
        return RawEvent(kind, kv.value, kv.mod_revision)
    obj = meta.decode_at(kv.value, kv.mod_revision)
    now = match(obj)
    if event.type == "DELETE":
        return RawEvent("DELETED", kv.value, kv.mod_revision, obj) if now else None
    before = event.prev is not None and match(meta.decode(event.prev))
    if now and before:
        return RawEvent("MODIFIED", kv.value, kv.mod_revision, obj)
    if now:
        return RawEvent("ADDED", kv.value, kv.mod_revision, obj)
    if before:
        return RawEvent("DELETED", kv.value, kv.mod_revision, obj)
    return None
