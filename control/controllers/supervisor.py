"""Restarting what crashed: `Supervisor.run(name, start)` awaits `start()` (a fresh coroutine per
attempt) until `stop` is set. When it raises (or returns while the manager still runs), the
traceback goes to the log, a Warning Event (reason `ControllerCrashed`) is recorded on the
controller manager's Lease in kube-system (the object Kubernetes' controller manager reports
on), and `start()` is awaited again after a back-off: 1 s doubling to 60 s, back to 1 s once
an attempt ran `reset_after` (10 minutes, like the kubelet's CrashLoopBackOff).

The Event message names the controller and the exception but not the delay, so repeats of one
crash aggregate into one Event whose `count` says how often it happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from control.clientbase import Obj
from control.clock import Clock
from control.controllers.events import EventRecorder

__all__ = ["CRASH_REASON", "MANAGER_OBJECT", "Backoff", "Supervisor"]

log = logging.getLogger(__name__)

CRASH_REASON = "ControllerCrashed"
MANAGER_OBJECT: Obj = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                       "metadata": {"name": "kube-controller-manager",
                                    "namespace": "kube-system"}}


@dataclass(frozen=True)
class Backoff:
    initial: float = 1.0
    maximum: float = 60.0
    reset_after: float = 600.0

    def delay(self, failures: int) -> float:
        """The wait before restart number `failures + 1` of a crash loop."""
        return float(min(self.initial * 2.0 ** failures, self.maximum))


@dataclass
class Supervisor:
    clock: Clock
    stop: asyncio.Event
    recorder: EventRecorder | None = None
    backoff: Backoff = field(default_factory=Backoff)
    restarts: dict[str, int] = field(default_factory=dict)      # name -> restarts so far
    delays: dict[str, list[float]] = field(default_factory=dict)  # name -> back-offs used

    def __repr__(self) -> str:
        return f"<Supervisor restarts={self.restarts}>"

    async def run(self, name: str, start: Callable[[], Awaitable[None]]) -> None:
        """Run start() and restart it with back-off until stop is set."""
        failures = 0
        while not self.stop.is_set():
            began = self.clock.monotonic()
            try:
                await start()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a crash is anything but cancellation
                why = f"{type(exc).__name__}: {exc}"
                crashed: BaseException | None = exc
            else:
                if self.stop.is_set():
                    return
                why, crashed = "it returned while the controller manager runs", None
            if self.clock.monotonic() - began >= self.backoff.reset_after:
                failures = 0
            delay = self.backoff.delay(failures)
            failures += 1
            self.restarts[name] = self.restarts.get(name, 0) + 1
            self.delays.setdefault(name, []).append(delay)
            log.error("controllers: %s crashed (%s); restart %d in %.0fs", name, why,
                      self.restarts[name], delay, exc_info=crashed)
            await self._event(name, why)
            await self._wait(delay)

    async def _event(self, name: str, why: str) -> None:
        if self.recorder is None:
            return
        try:
            await self.recorder.record(MANAGER_OBJECT, "Warning", CRASH_REASON,
                                       f"controller {name} crashed ({why}); restarting it "
                                       "with back-off")
        except Exception:  # the event is a report: never let it stop the restart
            log.exception("controllers: %s: the %s event was not recorded", name, CRASH_REASON)

    async def _wait(self, delay: float) -> None:
        """Sleep `delay` on the clock, or less if stop is set meanwhile."""
        sleep = asyncio.ensure_future(self.clock.sleep(delay))
        stopped = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({sleep, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (sleep, stopped):
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t
