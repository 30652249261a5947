"""Ephemeral containers of one pod (`kubectl debug`): started inside the running pod when
they appear in its spec, never restarted, never probed, reported in
`status.ephemeralContainerStatuses`.

Each one is a `ContainerRunner` that does not restart (as the kubelet runs them: restart
policy Never whatever the pod's), sharing the pod's network, IPC and volumes; with
`targetContainerName` it joins that container's PID namespace (the runtime's
`ContainerSpec.pid_target`), so `ps` in it shows the target's processes. One that already
ran (its status says terminated) is not run again after an agent restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from knet.kubelet.status import ContainerView

log = logging.getLogger(__name__)
Obj = dict[str, Any]

__all__ = ["EphemeralContainers"]


class EphemeralContainers:
    """The ephemeral containers of one pod worker. `make_runner(container, view)` builds a
    runner in the pod's sandbox (the worker's own factory, with `ephemeral=True`, which also
    lists it among the pod's runners, so logs, attach and deletion find it)."""

    def __init__(self, key: str, make_runner: Callable[[Obj, ContainerView], Any],
                 changed: Callable[[], None]) -> None:
        self.key = key
        self.make_runner = make_runner
        self.changed = changed
        self.views: list[ContainerView] = []
        self.runners: list[Any] = []
        self._tasks: set[asyncio.Task[int]] = set()

    def __repr__(self) -> str:
        return f"<EphemeralContainers {self.key} {[v.name for v in self.views]}>"

    def sync(self, pod: Obj) -> None:
        """Start the ephemeral containers of `pod` that this worker has not seen yet."""
        known = {v.name for v in self.views}
        before = len(self.views)
        old = {s["name"]: s for s in (pod.get("status") or {}).get(
            "ephemeralContainerStatuses") or []}
        for c in (pod.get("spec") or {}).get("ephemeralContainers") or []:
            name = c.get("name")
            if not name or name in known:
                continue
            view = ContainerView(name=name, image=c.get("image", ""))
            view.will_restart = False
            self.views.append(view)
            was = old.get(name) or {}
            if "terminated" in (was.get("state") or {}):     # it ran before an agent restart
                view.state = was["state"]
                view.container_id = str(was.get("containerID", "")).removeprefix("knet://")
                continue
            runner = self.make_runner(c, view)
            self.runners.append(runner)
            task = asyncio.create_task(runner.run(adopt="running" in (was.get("state") or {})),
                                       name=f"ephemeral {self.key}/{name}")
            self._tasks.add(task)
            task.add_done_callback(self._done)
        if len(self.views) != before:       # only news wake the status publisher
            self.changed()

    def _done(self, task: asyncio.Task[int]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: ephemeral container failed: %s", self.key, task.exception())
        self.changed()

    def statuses(self) -> list[Obj]:
        return [v.to_status() for v in self.views]

    async def cancel(self) -> None:
        """Stop watching them: after the pod worker stopped their runners (deletion), or
        at agent exit (they keep running and are adopted later)."""
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
