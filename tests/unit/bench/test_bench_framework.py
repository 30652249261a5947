"""The bench framework: discovery and listing, the table helpers, the timing helpers, and a
tiny run of `python -m bench store` (figures are printed, never asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.__main__ import discover, listing
from bench.common import (
    Metric,
    fanout_delays_ms,
    fmt,
    ops_per_second,
    percentile,
    side_by_side,
    table,
)
from control.store.base import StoreEvent
from control.store.memory import MemoryStore

ROOT = Path(__file__).resolve().parents[3]


def test_discovery_reads_name_description_and_main(tmp_path: Path) -> None:
    pkg = tmp_path / "benchx"
    pkg.mkdir()
    (pkg / "good.py").write_text('NAME = "good"\nDESCRIPTION = "does x"\n'
                                 "def main(argv):\n    return 0\n")
    (pkg / "nomain.py").write_text('NAME = "nomain"\nDESCRIPTION = "no main"\n')
    (pkg / "common.py").write_text('NAME = "common"\nDESCRIPTION = "helpers"\n'
                                   "def main(argv):\n    return 0\n")
    (pkg / "_private.py").write_text('NAME = "p"\nDESCRIPTION = "p"\ndef main(argv): pass\n')
    found = discover(pkg)
    assert [(b.name, b.description, b.module) for b in found] == [("good", "does x",
                                                                    "benchx.good")]
    assert "good  does x" in listing(found)


def test_the_real_bench_directory_lists_the_store_benchmark() -> None:
    names = {b.name for b in discover()}
    assert "store" in names


def test_python_m_bench_lists_and_refuses_unknown_names() -> None:
    out = subprocess.run([sys.executable, "-m", "bench"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0 and "store" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "bench", "nope"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "no benchmark named 'nope'" in bad.stderr


def test_table_ratio_column_against_the_anchor_row_per_group() -> None:
    text = table(["metric", "system", "value"],
                 [["creates/s", "memory", 1000.0], ["creates/s", "sqlite", 250.0],
                  ["list ms", "memory", 2.0], ["list ms", "sqlite", 5.0]],
                 value_col=2, group_col=0, ratio_title="vs memory")
    lines = text.splitlines()
    assert lines[0].split() == ["metric", "system", "value", "vs", "memory"]
    assert lines[2].split()[-1] == "1.00x" and lines[3].split()[-1] == "0.25x"
    assert lines[5].split()[-1] == "2.50x"


def test_side_by_side_has_a_ratio_per_non_anchor_system() -> None:
    text = side_by_side([Metric("creates", "/s", {"memory": 10000.0, "sqlite": 5000.0}),
                         Metric("fan-out", "ms", {"memory": 0.5})],
                        ["memory", "sqlite", "etcd"], anchor="memory")
    head, _, creates, fan = text.splitlines()
    assert head.split()[-2:] == ["sqlite/memory", "etcd/memory"]
    assert creates.split() == ["creates", "/s", "10,000", "5,000", "-", "0.50x", "-"]
    assert fan.split()[-2:] == ["-", "-"]


def test_number_formatting_and_percentiles() -> None:
    assert [fmt(12345.6), fmt(123.45), fmt(1.234), fmt(0.01234), fmt(7), fmt(None)] == [
        "12,346", "123.5", "1.23", "0.0123", "7", "-"]
    samples = [float(i) for i in range(1, 101)]
    assert percentile(samples, 50) == 50.0 and percentile(samples, 99) == 99.0


async def test_ops_per_second_runs_every_index_once_across_tasks() -> None:
    seen: list[int] = []

    async def op(i: int) -> None:
        seen.append(i)

    rate = await ops_per_second(op, 500, concurrency=7)
    assert sorted(seen) == list(range(500)) and rate > 0


async def test_fanout_gives_one_sample_per_watcher_and_write() -> None:
    store = MemoryStore()

    def index_of(event: StoreEvent) -> int | None:
        return int(event.kv.key.rsplit("/", 1)[1])

    delays = await fanout_delays_ms(
        watchers=7, writes=5, index_of=index_of,
        open_watch=lambda: store.watch("/f/", from_revision=0),
        write=lambda i: store.create(f"/f/{i}", b"v"))
    assert len(delays) == 35 and all(d >= 0 for d in delays)
    assert store.active_watches == 0
    await store.close()


def test_bench_store_runs_end_to_end_on_tiny_sizes() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "store", "--backends", "memory,sqlite", "--creates",
         "50", "--list-sizes", "20", "--watchers", "3", "--writes", "3", "--repeat", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "sqlite/memory" in out.stdout and "write -> 3 watchers, p99" in out.stdout
