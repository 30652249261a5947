"""Reading container logs as `kubectl logs` does: tail, timestamps, follow, previous."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from knet.errors import RuntimeError_
from knet.runtime import layout, records
from knet.runtime.crilog import Framer
from knet.runtime.logs import read_log
from knet.runtime.process import ProcessRuntime

T0 = 1_795_316_645_000_000_000


def write_log(path: Path, stream: bytes, lines: list[bytes], *, start: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fr = Framer(stream)
    with open(path, "ab") as f:
        f.writelines(fr.feed(ln + b"\n", T0 + (start + i) * 1000) for i, ln in enumerate(lines))


async def collect(it: object) -> bytes:
    return b"".join([c async for c in it])  # type: ignore[attr-defined]


async def test_whole_log_without_and_with_timestamps(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    write_log(log, b"stdout", [b"one", b"two"])
    write_log(log, b"stderr", [b"three"], start=2)
    assert await collect(read_log(log, follow=False)) == b"one\ntwo\nthree\n"
    out = await collect(read_log(log, follow=False, timestamps=True))
    assert out.splitlines()[0] == b"2026-11-22T03:04:05.000000000Z one"
    assert out.splitlines()[2] == b"2026-11-22T03:04:05.000002000Z three"


@pytest.mark.parametrize("n,want", [(0, b""), (1, b"l9\n"), (3, b"l7\nl8\nl9\n"),
                                    (50, b"".join(b"l%d\n" % i for i in range(10)))])
async def test_tail_lines(tmp_path: Path, n: int, want: bytes) -> None:
    log = tmp_path / "0.log"
    write_log(log, b"stdout", [b"l%d" % i for i in range(10)])
    assert await collect(read_log(log, follow=False, tail_lines=n)) == want


async def test_tail_of_a_log_larger_than_a_read_block(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    write_log(log, b"stdout", [b"line %06d %s" % (i, b"x" * 100) for i in range(3000)])
    out = await collect(read_log(log, follow=False, tail_lines=1500))
    lines = out.splitlines()
    assert len(lines) == 1500
    assert lines[0].startswith(b"line 001500 ") and lines[-1].startswith(b"line 002999 ")


async def test_tail_counts_a_line_split_in_partials_once(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    log.write_bytes(b"t1 stdout F first\nt2 stdout P sec\nt3 stdout P on\nt4 stdout F d\n")
    assert await collect(read_log(log, follow=False, tail_lines=1)) == b"second\n"


async def test_follow_streams_new_lines_until_done(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    write_log(log, b"stdout", [b"before"])
    finished = asyncio.Event()
    got: list[bytes] = []

    async def reader() -> None:
        async for chunk in read_log(log, follow=True, done=finished.is_set, poll=0.02):
            got.append(chunk)

    task = asyncio.create_task(reader())
    await asyncio.sleep(0.1)
    assert got == [b"before\n"]
    write_log(log, b"stdout", [b"after"], start=1)
    for _ in range(100):
        if len(got) == 2:
            break
        await asyncio.sleep(0.02)
    assert got[1] == b"after\n"
    assert not task.done()
    write_log(log, b"stderr", [b"last words"], start=2)  # written just before the end
    finished.set()
    await asyncio.wait_for(task, timeout=5)
    assert b"".join(got) == b"before\nafter\nlast words\n"


def make_instance(pod: Path, name: str, attempt: int, lines: list[bytes], *,
                  exited: bool) -> layout.Instance:
    inst = layout.instance(pod, name, attempt)
    write_log(inst.log, b"stdout", lines)
    inst.spec.write_bytes(b"")
    me = records.proc_stat(os.getpid())
    assert me is not None
    records.write_record(inst.state, {"pid": "0", "pid_start": "0", "shim_pid": str(os.getpid()),
                                      "shim_start": str(me[1]), "started_at": "0"})
    if exited:
        records.write_record(inst.exit, {"code": "1", "finished_at": "0", "reason": "Error"})
    return inst


async def test_previous_reads_the_instance_before(tmp_path: Path) -> None:
    make_instance(tmp_path, "app", 0, [b"first run"], exited=True)
    cur = make_instance(tmp_path, "app", 1, [b"second run"], exited=False)
    rt = ProcessRuntime()
    assert await collect(rt.read_logs(cur.log, follow=False)) == b"second run\n"
    assert await collect(rt.read_logs(cur.log, follow=False, previous=True)) == b"first run\n"
    # follow on the previous instance ends at once: it has exited
    out = await asyncio.wait_for(collect(rt.read_logs(cur.log, follow=True, previous=True)), 5)
    assert out == b"first run\n"


async def test_previous_of_a_first_instance_is_a_clear_error(tmp_path: Path) -> None:
    cur = make_instance(tmp_path, "app", 0, [b"only run"], exited=False)
    with pytest.raises(RuntimeError_, match='previous terminated container "app" not found'):
        ProcessRuntime().read_logs(cur.log, follow=False, previous=True)  # raised at the call


def test_a_path_that_is_not_a_container_log(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a container log"):
        layout.instance_of_log(tmp_path / "x.txt")


async def test_follow_moves_on_when_the_log_is_rotated(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    write_log(log, b"stdout", [b"old 1", b"old 2"])
    finished = asyncio.Event()
    got: list[bytes] = []

    async def reader() -> None:
        async for chunk in read_log(log, follow=True, done=finished.is_set, poll=0.02):
            got.append(chunk)

    task = asyncio.create_task(reader())
    await asyncio.sleep(0.1)
    write_log(log, b"stdout", [b"old 3"], start=2)
    os.replace(log, tmp_path / "0.log.1")  # what the shim does past log_max_bytes
    write_log(log, b"stdout", [b"new 1"], start=3)
    await asyncio.sleep(0.2)
    finished.set()
    await asyncio.wait_for(task, timeout=5)
    assert b"".join(got) == b"old 1\nold 2\nold 3\nnew 1\n"
