"""The `Clock` seam: wall time, monotonic time and sleeping, passed into every controller,
the scheduler and the informers so tests can drive time by hand.

`RealClock` is the system clock. `FakeClock` only moves when a test calls `advance()`;
sleepers wake in deadline order as time passes them, so "40 s without a Lease renewal" is a
one-line test. Both satisfy the same Protocol.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "FakeClock", "RealClock", "parse_rfc3339", "rfc3339"]


@runtime_checkable
class Clock(Protocol):
    def now(self) -> datetime:
        """Wall-clock time, timezone-aware UTC."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never goes back."""

    async def sleep(self, seconds: float) -> None:
        ...


class RealClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "<RealClock>"


class FakeClock:
    """A clock that moves only when told: `await clock.advance(5)` wakes every sleeper whose
    deadline is reached, in order, letting the event loop run between wake-ups."""

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._t = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._start.timestamp() + self._t, UTC)

    def monotonic(self) -> float:
        return self._t

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._t + seconds, next(self._seq), fut))
        await fut

    async def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, waking sleepers at their deadlines."""
        target = self._t + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._sleepers)
            self._t = max(self._t, deadline)
            if not fut.done():
                fut.set_result(None)
            for _ in range(5):
                await asyncio.sleep(0)
        self._t = target
        for _ in range(5):
            await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"<FakeClock t={self._t:.3f}s sleepers={len(self._sleepers)}>"


def rfc3339(dt: datetime) -> str:
    """Kubernetes timestamp form: 2026-01-01T00:00:00Z (seconds precision, UTC)."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
