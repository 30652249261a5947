"""Watches of the object layer: store events turned into Kubernetes watch events.

Without a resourceVersion (or with "0") the current state comes first as ADDED events, then
the changes after the list's revision. With a selector, an object that starts matching is
ADDED, one that stops matching is DELETED (carrying its new state), as the kube-apiserver's
watch cache does. A revision below the store's compaction raises `Gone`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from control.api import meta
from control.api.meta import Obj
from control.clientbase import WatchEvent
from control.models.resources import ResourceInfo
from control.store.base import StoreEvent

if TYPE_CHECKING:
    from control.api.objects import ObjectService

Match = Callable[[Obj], bool] | None


async def watch(svc: ObjectService, info: ResourceInfo, *, namespace: str | None,
                match: Match, resource_version: str | None) -> AsyncIterator[WatchEvent]:
    prefix = info.prefix(namespace)
    if resource_version in (None, "", "0"):
        kvs, revision = await svc.store.list(prefix)
        for kv in kvs:
            obj = meta.decode(kv)
            if match is None or match(obj):
                yield WatchEvent("ADDED", obj)
    else:
        revision = meta.parse_revision(resource_version)
    stream = svc.store.watch(prefix, from_revision=revision)
    try:
        async for event in stream:
            out = translate(event, match)
            if out is not None:
                yield out
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()


def translate(event: StoreEvent, match: Match) -> WatchEvent | None:
    """One store event as the watch event a client with this filter should see, or None."""
    kv = event.kv
    if event.type == "DELETE":
        obj = meta.decode_at(kv.value, kv.mod_revision)
        if match is None or match(obj):
            return WatchEvent("DELETED", obj)
        return None
    obj = meta.decode(kv)
    if event.prev is None:
        if match is None or match(obj):
            return WatchEvent("ADDED", obj)
        return None
    if match is None:
        return WatchEvent("MODIFIED", obj)
    now = match(obj)
    before = match(meta.decode(event.prev))
    if now and before:
        return WatchEvent("MODIFIED", obj)
    if now:
        return WatchEvent("ADDED", obj)
    if before:
        return WatchEvent("DELETED", obj)
    return None
