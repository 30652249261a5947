"""HTTP watch streams: newline-delimited JSON `{"type": ..., "object": ...}` events, chunked.

The object layer yields the events; this module frames them (one-row Tables when the client
asked for a Table), honours `timeoutSeconds`, reports `Gone` as an in-stream ERROR event with
a 410 Status (what client-go and the Python client expect), and registers the handler task in
`app[STREAMS]` so a graceful shutdown can cancel it instead of waiting for the client.
With `allowWatchBookmarks=true`, BOOKMARK events carry the revision seen so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from control.api import codec, crd, crdtable, params
from control.api.conversion import Converter
from control.api.keys import BOOKMARK_INTERVAL, STOPPING, STREAMS
from control.api.objects import ObjectService
from control.api.watching import Progress, RawEvent
from control.errors import ApiError
from control.models.resources import ResourceInfo

log = logging.getLogger(__name__)

def _selector(request: web.Request, name: str | None) -> str | None:
    fields = request.query.get("fieldSelector")
    if name:
        by_name = f"metadata.name={name}"
        fields = f"{fields},{by_name}" if fields else by_name
    return fields


Tabler = Callable[[list[Any], bool], dict[str, Any]]


def _tabler(objects: ObjectService, info: ResourceInfo) -> Tabler:
    """One-row Tables of the kind: its printer, or a CRD's additionalPrinterColumns."""
    kind = objects.registry.custom_admit(info) if info.custom else None
    if isinstance(kind, crd.CustomKind):
        return lambda objs, first: crdtable.table(kind, objs, include_columns=first)
    return lambda objs, first: codec.table_of(info.plural, objs, include_columns=first)


def _frame(event: RawEvent, table_for: Tabler | None, *, first: bool,
           conv: Converter | None = None) -> bytes:
    if table_for is None:
        if conv is not None and conv.active:
            obj = conv.outgoing(event.object())
            return codec.dumps({"type": event.type, "object": obj}) + b"\n"
        return event.frame()
    table = table_for([event.object()], first)
    return codec.dumps({"type": event.type, "object": table}) + b"\n"


async def serve_watch(request: web.Request, objects: ObjectService, info: ResourceInfo, *,
                      namespace: str | None, name: str | None,
                      conv: Converter | None = None) -> web.StreamResponse:
    q = request.query
    timeout = params.timeout_seconds(request)
    progress = Progress()
    stream = objects.watch_raw(info.plural, namespace=namespace,
                               resource_version=params.resource_version(request),
                               label_selector=q.get("labelSelector"),
                               field_selector=_selector(request, name), progress=progress)
    table_for = _tabler(objects, info) if codec.wants_table(request) else None
    resp = web.StreamResponse(headers={"Content-Type": "application/json",
                                       "Cache-Control": "no-cache"})
    resp.enable_chunked_encoding()
    task = asyncio.current_task()
    streams = request.app[STREAMS]
    if task is not None:
        streams.add(task)
    bookmarks: asyncio.Task[None] | None = None
    try:
        await resp.prepare(request)
        if q.get("allowWatchBookmarks", "").lower() in ("1", "true"):
            bookmarks = asyncio.create_task(_bookmarks(resp, info, progress,
                                                       request.app[BOOKMARK_INTERVAL]))
        with contextlib.suppress(asyncio.TimeoutError, ConnectionResetError):
            async with asyncio.timeout(timeout):
                await _pump(resp, stream, table_for, conv)
    except asyncio.CancelledError:
        if not request.app[STOPPING].is_set():
            raise
    finally:
        if bookmarks is not None:
            bookmarks.cancel()
        if task is not None:
            streams.discard(task)
        await stream.aclose()      # type: ignore[attr-defined]
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        await resp.write_eof()
    return resp


async def _bookmarks(resp: web.StreamResponse, info: ResourceInfo, progress: Progress,
                     interval: float) -> None:
    """Every `interval` s, a BOOKMARK with the revision seen so far, if it moved: a client
    resuming from it skips what it did not care about instead of getting Gone later."""
    sent = 0
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        while True:
            await asyncio.sleep(interval)
            if progress.revision > sent:
                sent = progress.revision
                obj = {"kind": info.kind, "apiVersion": info.api_version,
                       "metadata": {"resourceVersion": str(sent)}}
                await resp.write(codec.dumps({"type": "BOOKMARK", "object": obj}) + b"\n")


async def _pump(resp: web.StreamResponse, stream: Any, table_for: Tabler | None,
                conv: Converter | None = None) -> None:
    try:
        first = True
        async for event in stream:
            await resp.write(_frame(event, table_for, first=first, conv=conv))
            first = False
    except ApiError as err:                 # Gone: too old resourceVersion
        await resp.write(codec.dumps({"type": "ERROR", "object": err.status()}) + b"\n")
