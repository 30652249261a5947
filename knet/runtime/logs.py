"""Reading a container's CRI log file the way `kubectl logs` wants it.

`read_log` serves tail_lines (found by reading the file backwards, so a long log is not read
whole), timestamps, and follow: it polls the file for new lines until `done()` says the
instance has ended and the file has been read to its end once more after that. As the
kubelet's ReadLogs: `since` (sinceSeconds/sinceTime) drops each CRI line written before it,
after the tail was taken (`--tail=5 --since=10s`: of the last 5 lines, those of the last 10 s),
and `limit_bytes` stops the output after that many bytes, mid-line if need be.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO

from knet.runtime.crilog import CriLine, format_time, parse_line, render

_BLOCK = 64 * 1024


def tail_offset(f: BinaryIO, n: int) -> int:
    """File offset where the last `n` logical lines (ended by an `F` line) begin."""
    end = f.seek(0, os.SEEK_END)
    if n <= 0:
        return end
    buf = b""
    pos = end
    while True:
        step = min(_BLOCK, pos)
        pos -= step
        f.seek(pos)
        buf = f.read(step) + buf
        # lines fully inside buf; the first one may be cut unless we are at the start
        lines = buf.split(b"\n")
        first_complete = 0 if pos == 0 else 1
        offset = len(buf)
        seen = 0
        for i in range(len(lines) - 1, first_complete - 1, -1):
            offset -= len(lines[i]) + (1 if i < len(lines) - 1 else 0)
            ln = parse_line(lines[i])
            if ln is not None and not ln.partial and i < len(lines) - 1:
                seen += 1
                if seen == n + 1:
                    return pos + offset + len(lines[i]) + 1
        if pos == 0:
            return 0


def _rotated(path: Path, f: BinaryIO) -> bool:
    try:
        return os.stat(path).st_ino != os.fstat(f.fileno()).st_ino
    except FileNotFoundError:
        return False


async def read_log(path: Path, *, follow: bool, tail_lines: int | None = None,
                   timestamps: bool = False, done: Callable[[], bool] | None = None,
                   poll: float = 0.1, since_ns: int | None = None,
                   limit_bytes: int | None = None) -> AsyncIterator[bytes]:
    """Yield the log as `kubectl logs` prints it. With follow, keep yielding new lines
    until `done()` is true (no `done`: forever, until the consumer stops iterating), and
    move on to the new file when the writer rotates the log. `since_ns`: only lines
    written at or after that time (ns since the epoch); `limit_bytes`: at most that much."""
    left = limit_bytes
    async for chunk in _read(path, follow=follow, tail_lines=tail_lines, timestamps=timestamps,
                             done=done, poll=poll,
                             since=format_time(since_ns) if since_ns is not None else None):
        if left is None:
            yield chunk
            continue
        yield chunk[:left]
        left -= len(chunk)
        if left <= 0:
            return


async def _read(path: Path, *, follow: bool, tail_lines: int | None, timestamps: bool,
                done: Callable[[], bool] | None, poll: float,
                since: bytes | None) -> AsyncIterator[bytes]:
    f = open(path, "rb")  # noqa: ASYNC230, SIM115 - a local file, read in short steps
    try:
        if tail_lines is not None:
            f.seek(tail_offset(f, tail_lines))
        carry = b""
        rest: list[CriLine] = []
        finished = False
        while True:
            data = f.read(_BLOCK)
            if data:
                buf = carry + data
                cut = buf.rfind(b"\n")
                if cut < 0:
                    carry = buf
                    continue
                carry = buf[cut + 1:]
                lines = [p for raw in buf[:cut].split(b"\n") if (p := parse_line(raw))
                         and (since is None or p.ts >= since)]  # fixed width: comparable
                out, rest = render(rest + lines, timestamps=timestamps)
                if out:
                    yield out
                continue
            if follow and _rotated(path, f):  # the old file is read to its end: go on
                f.close()
                f = open(path, "rb")  # noqa: ASYNC230, SIM115
                continue
            if not follow or finished:
                break
            finished = done() if done is not None else False
            if not finished:
                await asyncio.sleep(poll)
        if rest:  # fragments never closed by an F line: the text as it is, no newline
            yield (rest[0].ts + b" " if timestamps else b"") + b"".join(r.msg for r in rest)
    finally:
        f.close()
