"""`PodControl`, client-go's name for it: how a workload controller creates and deletes the
pods it owns, with the Events upstream records (SuccessfulCreate / FailedCreate /
SuccessfulDelete) and the `Expectations` that cover the gap until the informer sees the write.
Creation goes in slow-start batches (1, 2, 4, ...) so a failing create stops a burst early.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from control.clientbase import Client, Obj
from control.controllers.events import EventRecorder
from control.controllers.util import Expectations, meta
from control.errors import ApiError, NotFound

__all__ = ["PodControl"]


class PodControl:
    def __init__(self, client: Client, *, recorder: EventRecorder,
                 expect: Expectations) -> None:
        self.client = client
        self.recorder = recorder
        self.expect = expect

    async def create_batches(self, key: str, owner: Obj, pods: Iterable[Obj]) -> None:
        """Create `pods` (for controller `key`) 1, 2, 4, ... at a time; the first error
        stops the rest and is raised."""
        todo = list(pods)
        batch = 1
        while todo:
            now, todo = todo[:batch], todo[batch:]
            results = await asyncio.gather(*(self.create(key, owner, p) for p in now),
                                           return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            if errors:
                raise errors[0]
            batch *= 2

    async def create(self, key: str, owner: Obj, pod: Obj) -> Obj:
        try:
            created = await self.client.create("pods", pod, namespace=meta(owner)["namespace"])
        except ApiError as exc:
            await self.recorder.record(owner, "Warning", "FailedCreate",
                                       f"Error creating: {exc.message}")
            raise
        name = meta(created)["name"]
        self.expect.expect_add(key, name)
        await self.recorder.record(owner, "Normal", "SuccessfulCreate", f"Created pod: {name}")
        return created

    async def delete(self, key: str, owner: Obj, victims: Iterable[Obj]) -> None:
        """Delete each pod (its uid as precondition); one already gone is skipped."""
        for pod in victims:
            name = meta(pod)["name"]
            self.expect.expect_delete(key, name)
            try:
                await self.client.delete("pods", name, namespace=meta(pod)["namespace"],
                                         preconditions_uid=meta(pod).get("uid"))
            except NotFound:
                continue
            await self.recorder.record(owner, "Normal", "SuccessfulDelete",
                                       f"Deleted pod: {name}")
