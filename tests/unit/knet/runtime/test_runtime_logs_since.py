"""`kubectl logs --since/--since-time/--limit-bytes` as the kubelet's ReadLogs serves them:
since drops the lines written before it (after the tail is taken), limitBytes cuts the
output, mid-line if need be, follow included."""

from __future__ import annotations

import asyncio
from pathlib import Path

from test_runtime_logs import T0, collect, write_log

from knet.runtime.logs import read_log

SEC = 1_000_000_000


def five_lines(path: Path) -> None:
    """line-0 .. line-4, written one second apart from T0."""
    write_log(path, b"stdout", [], start=0)
    for i in range(5):
        with open(path, "ab") as f:
            f.write(b"%s stdout F line-%d\n" % (_ts(T0 + i * SEC), i))


def _ts(ns: int) -> bytes:
    from knet.runtime.crilog import format_time
    return format_time(ns)


async def test_since_keeps_the_lines_written_at_or_after_it(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    five_lines(log)
    out = await collect(read_log(log, follow=False, since_ns=T0 + 3 * SEC))
    assert out == b"line-3\nline-4\n"
    out = await collect(read_log(log, follow=False, since_ns=T0 + 3 * SEC + 1))
    assert out == b"line-4\n"
    assert await collect(read_log(log, follow=False, since_ns=T0 + 60 * SEC)) == b""


async def test_tail_is_taken_before_since(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    five_lines(log)
    # of the last 3 lines (2, 3, 4), those since line 1's time: all three
    assert await collect(read_log(log, follow=False, tail_lines=3,
                                  since_ns=T0 + SEC)) == b"line-2\nline-3\nline-4\n"
    # of the last 3, those since line 4: one
    assert await collect(read_log(log, follow=False, tail_lines=3,
                                  since_ns=T0 + 4 * SEC)) == b"line-4\n"


async def test_limit_bytes_cuts_the_output_timestamps_included(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    five_lines(log)
    assert await collect(read_log(log, follow=False, limit_bytes=10)) == b"line-0\nlin"
    first = _ts(T0) + b" line-0\n"
    out = await collect(read_log(log, follow=False, limit_bytes=len(first) + 3,
                                 timestamps=True))
    assert out == first + _ts(T0 + SEC)[:3]


async def test_follow_stops_at_the_limit(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    five_lines(log)
    never_done = asyncio.Event()
    out = await asyncio.wait_for(collect(read_log(log, follow=True, limit_bytes=14,
                                                  done=never_done.is_set, poll=0.02)), 5)
    assert out == b"line-0\nline-1\n"
