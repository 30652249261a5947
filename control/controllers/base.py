"""`Controller`: the loop every reconciler shares: a `WorkQueue` of keys fed by informer
handlers, N workers each calling `reconcile(key)` for one key at a time.

`reconcile` is level-triggered and idempotent: it reads the current state (informer caches),
compares it with the desired state and acts; running it twice does nothing more. It raises
`Requeue(after=s)` to be looked at again later (e.g. minReadySeconds pending); any other
exception is logged and the key retried with per-key exponential back-off.
"""

from __future__ import annotations

import asyncio
import logging

from control.clientbase import Client
from control.clock import Clock
from control.controllers.queue import ShutDown, WorkQueue
from control.errors import ApiError, Conflict

__all__ = ["Controller", "Requeue"]

log = logging.getLogger(__name__)


class Requeue(Exception):
    """Raised by reconcile: look at this key again after `after` seconds (not an error)."""

    def __init__(self, after: float) -> None:
        super().__init__(f"requeue after {after}s")
        self.after = after


class Controller:
    name = "controller"

    def __init__(self, client: Client, *, clock: Clock, workers: int = 1) -> None:
        self.client = client
        self.clock = clock
        self.workers = workers
        self.queue = WorkQueue(clock=clock, name=self.name)
        self.log = logging.getLogger(f"{type(self).__module__}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.queue!r}>"

    async def reconcile(self, key: str) -> None:
        raise NotImplementedError

    def enqueue(self, key: str) -> None:
        self.queue.add(key)

    async def run(self, stop: asyncio.Event) -> None:
        """Run the workers until `stop` is set; then shut the queue and wait for them."""
        tasks = [asyncio.create_task(self._worker(), name=f"{self.name}-worker-{i}")
                 for i in range(self.workers)]
        try:
            await stop.wait()
        finally:
            self.queue.shutdown()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            try:
                await self.reconcile(key)
                self.queue.forget(key)
            except asyncio.CancelledError:
                raise
            except Requeue as rq:
                self.queue.forget(key)
                self.queue.add_after(key, rq.after)
            except Conflict as exc:
                delay = self.queue.add_rate_limited(key)
                self.log.debug("%s: conflict (%s); retry in %.2fs", key, exc, delay)
            except ApiError as exc:             # the API said no: no traceback, just why
                delay = self.queue.add_rate_limited(key)
                self.log.warning("%s: %s: %s (%s); retry in %.2fs", key, self.name,
                                 exc.message, exc.reason, delay)
            except Exception:
                delay = self.queue.add_rate_limited(key)
                self.log.exception("%s: %s reconcile failed; retry in %.2fs",
                                   key, self.name, delay)
            finally:
                self.queue.done(key)
