"""The rhythm the mesh's watch sources share (source.py's routes, secsource.py's security):
one informer per resource feeding handlers that only store and mark the source dirty, and a
loop every `period` seconds that does the work (`tick`), so a burst of changes costs one
rebuild and a change is live within a second. An exception in a tick is logged and the loop
goes on: one bad object must not stop the mesh.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from control.clientbase import Client, Obj
from knet.servicesource import InformerFactory, InformerLike, default_informer_factory

log = logging.getLogger(__name__)

__all__ = ["WatchedSource"]


class WatchedSource:
    """Informers for `resources`, handlers from `_put`/`_drop`, a periodic `tick`."""

    what = "mesh source"          # for the log line of a failed tick

    def __init__(self, client: Client, resources: Iterable[str], *,
                 informer: InformerFactory | None = None, period: float = 0.25) -> None:
        factory = informer or default_informer_factory()
        self.period = period
        self.objects: dict[str, dict[str, Any]] = {}
        self.informers: dict[str, InformerLike] = {}
        for resource in resources:
            self.objects[resource] = {}
            put = self._put(resource)
            inf = factory(client, resource)
            inf.add_handler(on_add=put, on_update=lambda old, new, put=put: put(new),
                            on_delete=self._drop(resource))
            self.informers[resource] = inf
        self._dirty = True
        self._task: asyncio.Task[None] | None = None

    def _put(self, resource: str) -> Callable[[Obj], None]:
        raise NotImplementedError

    def _drop(self, resource: str) -> Callable[[Obj], None]:
        raise NotImplementedError

    async def tick(self) -> None:
        raise NotImplementedError

    def failed(self) -> None:
        """After a failed tick (e.g. give up on what made it fail until the next change)."""

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # keep serving with what was built before
                log.exception("%s failed; the old state stays, retrying", self.what)
                self.failed()
            await asyncio.sleep(self.period)

    def start(self) -> None:
        for inf in self.informers.values():
            inf.start()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def wait_synced(self, timeout: float = 30.0) -> None:
        await asyncio.gather(*(i.wait_synced(timeout) for i in self.informers.values()))

    async def stop_watching(self) -> None:
        """Stop the loop and the informers (what a subclass's stop() does first)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        infs = list(self.informers.values())
        results = await asyncio.gather(*(i.stop() for i in infs), return_exceptions=True)
        for inf, res in zip(infs, results, strict=True):
            if isinstance(res, BaseException):
                log.error("%s: stopping informer %r failed: %s", self.what, inf, res)
