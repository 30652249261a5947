"""`WorkQueue`: the keys a controller still has to reconcile, like client-go's workqueue.

- a key waiting in the queue is there once, however often it is added (dedup);
- a key being processed is never handed to a second worker; if it is added meanwhile, it is
  queued again when `done()` is called (so the newest state is always reconciled);
- `add_rate_limited(key)` re-adds after a per-key exponential back-off (base * 2^failures,
  capped), `forget(key)` resets it after a success; `add_after(key, s)` for timed requeues.

Time comes from the `Clock`, so delayed adds are driven by a FakeClock in tests.
"""

from __future__ import annotations

import asyncio
from collections import deque

from control.clock import Clock

__all__ = ["ShutDown", "WorkQueue"]


class ShutDown(Exception):
    """The queue was shut down: workers should return."""


class WorkQueue:
    def __init__(self, *, clock: Clock, base_delay: float = 0.05, max_delay: float = 30.0,
                 name: str = "") -> None:
        self.name = name
        self._clock = clock
        self._base, self._max = base_delay, max_delay
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._failures: dict[str, int] = {}
        self._waiting: dict[str, float] = {}        # key -> monotonic deadline of add_after
        self._timers: set[asyncio.Task[None]] = set()
        self._wakeup = asyncio.Event()
        self._shutdown = False

    def __repr__(self) -> str:
        return (f"<WorkQueue {self.name} queued={len(self._queue)} "
                f"processing={len(self._processing)} delayed={len(self._waiting)}>")

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key: str) -> None:
        if self._shutdown or key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.append(key)
            self._notify()

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        deadline = self._clock.monotonic() + delay
        current = self._waiting.get(key)
        if current is not None and current <= deadline:
            return
        self._waiting[key] = deadline
        task = asyncio.get_running_loop().create_task(self._later(key, delay, deadline))
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    def add_rate_limited(self, key: str) -> float:
        """Re-add after the key's back-off; returns the delay used."""
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        delay = float(min(self._base * (2.0 ** n), self._max))
        self.add_after(key, delay)
        return delay

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def failures(self, key: str) -> int:
        return self._failures.get(key, 0)

    async def get(self) -> str:
        """The next key to process (waits for one); raises ShutDown once shut down."""
        while True:
            if self._shutdown:
                raise ShutDown()
            if self._queue:
                key = self._queue.popleft()
                self._processing.add(key)
                self._dirty.discard(key)
                return key
            self._wakeup.clear()
            await self._wakeup.wait()

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._notify()

    def idle(self) -> bool:
        """Nothing queued and nothing in progress (delayed adds do not count)."""
        return not self._queue and not self._processing

    def shutdown(self) -> None:
        self._shutdown = True
        for t in list(self._timers):
            t.cancel()
        self._notify()

    async def _later(self, key: str, delay: float, deadline: float) -> None:
        await self._clock.sleep(delay)
        if self._waiting.get(key) == deadline:
            del self._waiting[key]
            self.add(key)

    def _notify(self) -> None:
        self._wakeup.set()
