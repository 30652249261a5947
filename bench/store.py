"""`python -m bench store`: the Store backends side by side, memory as the anchor.

For each backend (memory, sqlite, and etcd when the binary is installed: a LocalEtcd on
loopback with a temporary data dir) on a fresh store: creates/s one at a time and from 50
concurrent tasks, list latency of a prefix holding 1,000 and 10,000 keys, and the delay from
a write to each of 100 watchers (median and p99). Values are pod-sized (1.5 KB by default).
Issue 3's goals for the API on SQLite: >= 2,000 creates/s, < 10 ms median fan-out delay.
`open_backend()` and the timing helpers of `bench.common` are what an API-level bench reuses.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from bench.common import (
    Metric,
    add_loop_option,
    bench_main,
    fanout_delays_ms,
    latencies_ms,
    median,
    ops_per_second,
    percentile,
    side_by_side,
)
from control.store.base import Store, StoreEvent
from control.store.etcd import EtcdStore
from control.store.etcd_server import LocalEtcd, etcd_binary
from control.store.memory import MemoryStore
from control.store.sqlite import SqliteStore

NAME = "store"
DESCRIPTION = ("Store backends side by side (memory anchor, sqlite, etcd): creates/s seq and "
               "50 concurrent, list ms at 1k/10k keys, write->100 watchers delay")


@contextlib.asynccontextmanager
async def open_backend(name: str, workdir: Path) -> AsyncIterator[Store]:
    """A fresh store of that backend under workdir (etcd: a LocalEtcd started and stopped)."""
    if name == "memory":
        store: Store = MemoryStore()
    elif name == "sqlite":
        store = SqliteStore(str(workdir / "knet.db"))
    elif name == "etcd":
        etcd = await LocalEtcd.start(workdir / "etcd")
        store = EtcdStore([etcd.client])
    else:
        raise ValueError(f"unknown backend {name!r}: use memory, sqlite or etcd")
    try:
        yield store
    finally:
        await store.close()
        if name == "etcd":
            await etcd.stop()


def _value(size: int, i: int) -> bytes:
    head = b'{"kind":"Pod","metadata":{"name":"p%d"},"spec":{"x":"' % i
    return head + b"a" * max(size - len(head) - 4, 0) + b'"}}'


async def measure(store: Store, args: argparse.Namespace) -> dict[str, float]:
    """Every figure for one backend, in the row order of `rows()`."""
    size, n = args.value_size, args.creates
    out: dict[str, float] = {}
    out["seq"] = await ops_per_second(
        lambda i: store.create(f"/registry/pods/seq/p{i:06d}", _value(size, i)), n)
    out["conc"] = await ops_per_second(
        lambda i: store.create(f"/registry/pods/conc/p{i:06d}", _value(size, i)), n,
        concurrency=args.concurrency)
    for count in args.list_sizes:
        out[f"list{count}"] = await _list_ms(store, args, count)
    rev = await store.current_revision()

    def index_of(event: StoreEvent) -> int | None:
        return int(event.kv.key.rsplit("/f", 1)[1])

    delays = await fanout_delays_ms(
        watchers=args.watchers, writes=args.writes, index_of=index_of,
        open_watch=lambda: store.watch("/registry/pods/fan/", from_revision=rev),
        write=lambda i: store.create(f"/registry/pods/fan/f{i}", _value(size, i)))
    out["fan50"] = median(delays)
    out["fan99"] = percentile(delays, 99)
    return out


async def _list_ms(store: Store, args: argparse.Namespace, count: int) -> float:
    prefix = f"/registry/pods/list{count}/"
    await ops_per_second(lambda i: store.create(f"{prefix}p{i:06d}", _value(args.value_size, i)),
                         count, concurrency=args.concurrency)
    return median(await latencies_ms(lambda: store.list(prefix), repeat=args.repeat))


def rows(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    lists = [(f"list{c}", f"list latency, {c:,} keys (median)", "ms") for c in args.list_sizes]
    return [("seq", "creates, sequential", "/s"),
            ("conc", f"creates, {args.concurrency} concurrent tasks", "/s"),
            *lists,
            ("fan50", f"write -> {args.watchers} watchers, median", "ms"),
            ("fan99", f"write -> {args.watchers} watchers, p99", "ms")]


async def run(args: argparse.Namespace) -> str:
    results: dict[str, dict[str, float]] = {}
    for backend in args.backends:
        with tempfile.TemporaryDirectory(prefix=f"knet-bench-{backend}-") as tmp:
            async with open_backend(backend, Path(tmp)) as store:
                results[backend] = await measure(store, args)
    metrics = [Metric(label, unit, {b: results[b][key] for b in args.backends})
               for key, label, unit in rows(args)]
    title = (f"Store backends, fresh store each, values {args.value_size} B, "
             f"{args.creates:,} creates per row ({args.loop} loop)")
    return side_by_side(metrics, args.backends, anchor=args.backends[0], title=title)


def parse(argv: list[str]) -> argparse.Namespace:
    default = "memory,sqlite" + (",etcd" if etcd_binary() else "")
    p = argparse.ArgumentParser(prog="python -m bench store", description=DESCRIPTION)
    p.add_argument("--backends", default=default,
                   help=f"comma-separated, first is the anchor (default {default})")
    p.add_argument("--creates", type=int, default=3000, help="creates per throughput row")
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--list-sizes", default="1000,10000")
    p.add_argument("--repeat", type=int, default=5, help="list calls per size")
    p.add_argument("--watchers", type=int, default=100)
    p.add_argument("--writes", type=int, default=200, help="writes timed for fan-out")
    p.add_argument("--value-size", type=int, default=1500)
    add_loop_option(p)
    args = p.parse_args(argv)
    args.backends = [b for b in args.backends.split(",") if b]
    args.list_sizes = [int(x) for x in args.list_sizes.split(",") if x]
    return args


def main(argv: list[str]) -> int:
    return bench_main(argv, parse, run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
