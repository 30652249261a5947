"""Shared pieces of the benchmarks: timing loops, percentiles, formatting and two table shapes.

Timing (async, generic over what is measured, so the store and the API benches share them):
- `ops_per_second(op, n, concurrency=...)`: op(i) for i in range(n) from `concurrency` tasks;
- `latencies_ms(op, repeat=...)`: one sample per call;
- `fanout_delays_ms(...)`: write -> every one of N watchers, one sample per (write, watcher).

Tables:
- `table(headers, rows, value_col=..., anchor_row=...)`: one row per system (or size, ...),
  plus a ratio column = that row's value / the anchor row's value (per group if `group_col`).
- `side_by_side(metrics, systems, anchor=...)`: one row per metric, one column per system,
  plus a ratio column per non-anchor system, e.g. memory | sqlite | etcd | sqlite/memory | ...

Both return the text; the benchmark's `main` prints it. Measurements only, never assertions.
`add_loop_option(parser)` + `run_async(coro, loop=args.loop)` run the measurements on uvloop
(default, as `knet control` does) or plain asyncio. A new benchmark is a module in bench/ with
`NAME`, `DESCRIPTION` and `main(argv) -> int`; see bench/store.py for a complete small one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

E = TypeVar("E")
T = TypeVar("T")

Cell = str | int | float | None


def fmt(value: Cell) -> str:
    """Numbers as people read them: 12,345 / 123.4 / 1.23 / 0.0123; None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value):
        return "-"
    a = abs(value)
    if a >= 1000:
        return f"{value:,.0f}"
    if a >= 100:
        return f"{value:.1f}"
    if a >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def ratio(value: Cell, anchor: Cell) -> str:
    if not isinstance(value, (int, float)) or not isinstance(anchor, (int, float)) or not anchor:
        return "-"
    r = value / anchor
    return f"{r:.2f}x" if r < 100 else f"{r:,.0f}x"


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; NaN for no samples."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(math.ceil(q / 100 * len(ordered)), 1)
    return ordered[min(rank, len(ordered)) - 1]


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples) if samples else math.nan


def _render(headers: Sequence[str], rows: Sequence[Sequence[str]], title: str) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        first = f"{cells[0]:<{widths[0]}}"
        rest = [f"{c:>{w}}" for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    out = [title] if title else []
    head = line(headers)
    out += [head, "-" * len(head)]
    out += [line(r) for r in rows]
    return "\n".join(out)


def table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], *, value_col: int,
          anchor_row: int = 0, group_col: int | None = None, ratio_title: str = "ratio",
          title: str = "") -> str:
    """Rows plus a ratio column: row[value_col] / anchor[value_col]. With `group_col`, the
    anchor is the `anchor_row`-th row of each run of rows sharing that column's value."""
    anchors: dict[Cell, Cell] = {}
    seen: dict[Cell, int] = {}
    for r in rows:
        g = r[group_col] if group_col is not None else None
        if seen.get(g, 0) == anchor_row:
            anchors[g] = r[value_col]
        seen[g] = seen.get(g, 0) + 1
    text = []
    for r in rows:
        g = r[group_col] if group_col is not None else None
        text.append([fmt(c) for c in r] + [ratio(r[value_col], anchors.get(g))])
    return _render([*headers, ratio_title], text, title)


@dataclass
class Metric:
    """One row of a side-by-side table: a measured quantity for each system."""
    name: str
    unit: str
    values: dict[str, Cell] = field(default_factory=dict)


def side_by_side(metrics: Sequence[Metric], systems: Sequence[str], *, anchor: str,
                 title: str = "") -> str:
    """metric | unit | one column per system | one `system/anchor` column per other system."""
    others = [s for s in systems if s != anchor]
    headers = ["metric", "unit", *systems, *(f"{s}/{anchor}" for s in others)]
    rows = []
    for m in metrics:
        cells = [m.name, m.unit, *(fmt(m.values.get(s)) for s in systems)]
        cells += [ratio(m.values.get(s), m.values.get(anchor)) for s in others]
        rows.append(cells)
    return _render(headers, rows, title)


# -- running ----------------------------------------------------------------------------------

def add_loop_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop",
                        help="event loop to measure on (default uvloop, as knet runs)")


def run_async(main: Coroutine[Any, Any, T], *, loop: str = "uvloop") -> T:
    if loop == "uvloop":
        import uvloop
        return uvloop.run(main)
    return asyncio.run(main)


def bench_main(argv: list[str], parse: Callable[[list[str]], argparse.Namespace],
               run: Callable[[argparse.Namespace], Coroutine[Any, Any, str]]) -> int:
    """A benchmark module's `main`: parse argv (it has `--loop`), run, print the table."""
    args = parse(argv)
    print(run_async(run(args), loop=args.loop))
    return 0


# -- timing -----------------------------------------------------------------------------------

async def ops_per_second(op: Callable[[int], Awaitable[object]], n: int, *,
                         concurrency: int = 1) -> float:
    """Run op(0) .. op(n-1), `concurrency` at a time (each task takes the next index)."""
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await op(i)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(max(concurrency, 1))))
    return n / (time.perf_counter() - t0)


async def latencies_ms(op: Callable[[], Awaitable[object]], *, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        await op()
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def fanout_delays_ms(*, watchers: int, open_watch: Callable[[], AsyncIterator[E]],
                           write: Callable[[int], Awaitable[object]],
                           index_of: Callable[[E], int | None], writes: int,
                           timeout: float = 30.0) -> list[float]:
    """Open `watchers` watches, then write(0) (warm-up) .. write(writes) one at a time, each
    only once every watcher has seen the previous one; a sample is the time from calling
    write(i) to a watcher receiving the event that `index_of` maps to i."""
    seen: list[list[float]] = [[] for _ in range(writes + 1)]
    done = [asyncio.Event() for _ in range(writes + 1)]
    streams = [open_watch() for _ in range(watchers)]

    async def reader(stream: AsyncIterator[E]) -> None:
        async for event in stream:
            i = index_of(event)
            if i is not None and 0 <= i <= writes:
                seen[i].append(time.perf_counter())
                if len(seen[i]) == watchers:
                    done[i].set()

    tasks = [asyncio.create_task(reader(s)) for s in streams]
    sent = [0.0] * (writes + 1)
    try:
        for i in range(writes + 1):
            sent[i] = time.perf_counter()
            await write(i)
            await asyncio.wait_for(done[i].wait(), timeout)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        for s in streams:
            close = getattr(s, "aclose", None)
            if close is not None:
                await close()
    return [(t - sent[i]) * 1000 for i in range(1, writes + 1) for t in seen[i]]
