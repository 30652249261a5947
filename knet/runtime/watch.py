"""Waiting on processes and pipes from the event loop without threads.

A pidfd (Linux >= 5.3) becomes readable when its process exits, whether or not it is our
child, so a container adopted after an agent restart is awaited like one we started. The
start time from /proc guards against a pid that was reused before we opened it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from knet.runtime import records


async def readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    loop.add_reader(fd, ready)
    try:
        await fut
    finally:
        loop.remove_reader(fd)


async def pid_exited(pid: int, start: int) -> None:
    """Return once process `pid` (the one that started at `start`) has exited."""
    if not records.alive(pid, start):
        return
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if records.alive(pid, start):  # still the same process now that we hold its pidfd
            await readable(fd)
    finally:
        os.close(fd)


async def read_pipe(fd: int, *, timeout: float, into: bytearray,
                    until: Callable[[bytearray], bool] | None = None) -> bool:
    """Append to `into` what is written to pipe `fd` until its writers close it (False) or
    `until(into)` holds (True); raises TimeoutError after `timeout` s (what came so far
    stays in `into`)."""
    os.set_blocking(fd, False)

    async def drain() -> bool:
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                await readable(fd)
                continue
            if not data:
                return False
            into.extend(data)
            if until is not None and until(into):
                return True

    return await asyncio.wait_for(drain(), timeout=timeout)


async def pipe_closed(fd: int) -> None:
    """Return once every writer of pipe `fd` closed it (what is still written is dropped)."""
    os.set_blocking(fd, False)
    while True:
        try:
            if not os.read(fd, 4096):
                return
        except BlockingIOError:
            await readable(fd)
