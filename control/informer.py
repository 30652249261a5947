"""`Informer`: a local cache of one resource kept current by list + watch, with handlers.

Used by the controllers, the scheduler, the kubelet, the proxy and DNS. The API:

    inf = Informer(client, "pods", namespace=None, label_selector=None, field_selector=None)
    inf.add_handler(handler)            # an InformerHandler (any subset of the methods) or
    inf.add_handler(on_add=f, on_update=g, on_delete=h, on_synced=s)   # plain callables
    inf.start()                         # owns one task: list, then watch from the list's RV
    await inf.wait_synced(timeout=10)   # raises TimeoutError if the first list has not landed
    inf.get("default/web-1")            # key = "namespace/name" ("name" if cluster-scoped)
    inf.list()                          # all cached objects (inf.list(namespace="x") filters)
    await inf.stop()

Handlers run one at a time, in event order, inside the informer's task; a handler may be a
plain function or a coroutine function; an exception in a handler is logged, never fatal.
`on_synced()` fires once, after the first list has been delivered as adds. Cached objects
are shared: treat them as read-only (deep-copy before changing).

Key design choice: the watch is restarted from the last resourceVersion seen after any error
(with exponential back-off), and only a `Gone` (410, history compacted) causes a re-list;
the re-list is diffed against the cache so handlers see the deletes, updates and adds they
missed, exactly as if they had watched them.
"""

from __future__ import annotations

import asyncio
import builtins
import inspect
import logging
from collections.abc import Callable
from typing import Any, Protocol

from control.clientbase import Client, Obj, WatchEvent
from control.errors import Gone

__all__ = ["Informer", "InformerHandler", "object_key"]

log = logging.getLogger(__name__)


class InformerHandler(Protocol):
    """Any subset of these methods may be defined (sync or async)."""

    def on_add(self, obj: Obj) -> Any: ...

    def on_update(self, old: Obj, new: Obj) -> Any: ...

    def on_delete(self, obj: Obj) -> Any: ...

    def on_synced(self) -> Any: ...


class _Callbacks:
    def __init__(self, **fns: Callable[..., Any] | None) -> None:
        for name, fn in fns.items():
            if fn is not None:
                setattr(self, name, fn)


def object_key(obj: Obj) -> str:
    """`namespace/name`, or `name` for cluster-scoped objects."""
    meta = obj.get("metadata") or {}
    ns, name = meta.get("namespace"), meta.get("name", "")
    return f"{ns}/{name}" if ns else str(name)


class Informer:
    def __init__(self, client: Client, resource: str, *, namespace: str | None = None,
                 label_selector: str | None = None, field_selector: str | None = None,
                 min_backoff: float = 0.2, max_backoff: float = 10.0,
                 page_size: int = 500) -> None:
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self._min_backoff, self._max_backoff = min_backoff, max_backoff
        self._page_size = page_size
        self._cache: dict[str, Obj] = {}
        self._handlers: list[Any] = []
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._replays: set[asyncio.Task[None]] = set()
        self._rv: str | None = None
        self.relists = 0   # how many times the informer listed (1 + one per Gone)

    def __repr__(self) -> str:
        where = f" ns={self.namespace}" if self.namespace else ""
        state = "synced" if self._synced.is_set() else "syncing"
        return f"<Informer {self.resource}{where} {len(self._cache)} objects {state} rv={self._rv}>"

    # ---- public API ---------------------------------------------------------------------

    def add_handler(self, handler: Any = None, *, on_add: Callable[[Obj], Any] | None = None,
                    on_update: Callable[[Obj, Obj], Any] | None = None,
                    on_delete: Callable[[Obj], Any] | None = None,
                    on_synced: Callable[[], Any] | None = None) -> None:
        """Register a handler (best before start()). Added to a synced informer, it is told
        about the cached objects (on_add each), then on_synced, from a task of its own."""
        h = handler if handler is not None else _Callbacks(
            on_add=on_add, on_update=on_update, on_delete=on_delete, on_synced=on_synced)
        self._handlers.append(h)
        if self._synced.is_set():
            task = asyncio.get_running_loop().create_task(self._replay(h))
            self._replays.add(task)
            task.add_done_callback(self._replays.discard)

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"informer-{self.resource}")

    async def stop(self) -> None:
        for replay in list(self._replays):
            replay.cancel()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self, timeout: float = 30.0) -> None:
        try:
            await asyncio.wait_for(self._synced.wait(), timeout)
        except TimeoutError:
            raise TimeoutError(f"informer {self.resource}: not synced after {timeout}s; "
                               "is the API server reachable?") from None

    def get(self, key: str) -> Obj | None:
        return self._cache.get(key)

    def list(self, *, namespace: str | None = None) -> builtins.list[Obj]:
        if namespace is None:
            return list(self._cache.values())
        return [o for o in self._cache.values()
                if (o.get("metadata") or {}).get("namespace") == namespace]

    def keys(self) -> builtins.list[str]:
        return list(self._cache)

    @property
    def resource_version(self) -> str | None:
        return self._rv

    # ---- the loop -------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = self._min_backoff
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                await self._watch()
                backoff = self._min_backoff
            except asyncio.CancelledError:
                raise
            except Gone:
                log.info("%s: watch from rv %s expired; re-listing", self.resource, self._rv)
                if need_list:                    # the list itself expired: do not spin
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self._max_backoff)
                need_list = True
            except Exception as exc:   # noqa: BLE001 - any failure: back off and re-watch
                log.warning("%s: list/watch failed (%s); retrying in %.1fs",
                            self.resource, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)

    async def _watch(self) -> None:
        stream = self.client.watch(
            self.resource, namespace=self.namespace, resource_version=self._rv,
            label_selector=self.label_selector, field_selector=self.field_selector)
        try:
            async for ev in stream:
                await self._apply(ev)
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _relist(self) -> None:
        items: list[Obj] = []
        token: str | None = None
        while True:
            page = await self.client.list(
                self.resource, namespace=self.namespace, label_selector=self.label_selector,
                field_selector=self.field_selector, limit=self._page_size, continue_token=token)
            items.extend(page.items)
            rv = page.resource_version
            token = page.continue_token or None
            if not token:
                break
        self.relists += 1
        fresh = {object_key(o): o for o in items}
        old = self._cache
        self._cache = fresh
        self._rv = rv
        for key, obj in old.items():
            if key not in fresh:
                await self._emit("on_delete", obj)
        for key, obj in fresh.items():
            prev = old.get(key)
            if prev is None:
                await self._emit("on_add", obj)
            elif _rv_of(prev) != _rv_of(obj):
                await self._emit("on_update", prev, obj)
        if not self._synced.is_set():
            self._synced.set()
            await self._emit("on_synced")

    async def _apply(self, ev: WatchEvent) -> None:
        obj = ev.object
        rv = _rv_of(obj)
        if rv:
            self._rv = rv
        if ev.type == "BOOKMARK":
            return
        key = object_key(obj)
        if ev.type == "DELETED":
            prev = self._cache.pop(key, None)
            await self._emit("on_delete", obj if obj.get("metadata") else prev or obj)
            return
        prev = self._cache.get(key)
        self._cache[key] = obj
        if prev is None:
            await self._emit("on_add", obj)
        else:
            await self._emit("on_update", prev, obj)

    async def _emit(self, method: str, *args: Any) -> None:
        for h in list(self._handlers):
            await _call(h, method, args, self.resource)

    async def _replay(self, h: Any) -> None:
        for obj in list(self._cache.values()):
            await _call(h, "on_add", (obj,), self.resource)
        if self._synced.is_set():
            await _call(h, "on_synced", (), self.resource)


async def _call(h: Any, method: str, args: tuple[Any, ...], resource: str) -> None:
    fn = getattr(h, method, None)
    if fn is None:
        return
    try:
        res = fn(*args)
        if inspect.isawaitable(res):
            await res
    except Exception:
        key = object_key(args[-1]) if args and isinstance(args[-1], dict) else ""
        log.exception("%s %s: handler %s failed", resource, key, method)


def _rv_of(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")
