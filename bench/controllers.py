"""`python -m bench controllers`: how long the controllers take to converge, on the memory
store through LocalClient (as inside `knet control`), side by side with the anchor in the
same run: creating and binding the same pods straight through the client, which is the API
work any controller must do at least.

Rows per size N: "direct create+bind" (anchor), "ReplicaSet -> N pods bound" (replicaset
controller + scheduler, informers, events), "Deployment -> N pods bound" (adds the deployment
controller). Wall-clock seconds from the first write to the last pod bound. Measurements only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from bench.common import add_loop_option, bench_main, table
from control.api.local import LocalClient
from control.api.objects import ObjectService
from control.clock import RealClock
from control.controllers.manager import ControllerOptions, InformerFactory, build
from control.store.memory import MemoryStore

NAME = "controllers"
DESCRIPTION = "seconds for N replicas to be created and bound by the controllers vs direct API"

TEMPLATE: dict[str, Any] = {"metadata": {"labels": {"app": "web"}},
                            "spec": {"containers": [{"name": "c", "image": "knet/whoami"}]}}


async def memory_cluster(nodes: int) -> LocalClient:
    """An API on a memory store with `nodes` Ready nodes (the benchmarks' cluster)."""
    objects = ObjectService(MemoryStore())
    await objects.start()
    client = LocalClient(objects)
    await client.create("namespaces", {"metadata": {"name": "default"}})
    for i in range(1, nodes + 1):
        node = await client.create("nodes", {"metadata": {"name": f"node-{i}"}})
        node["status"] = {"conditions": [{"type": "Ready", "status": "True"}],
                          "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "10000"}}
        await client.update("nodes", node, subresource="status")
    return client


async def _direct(client: LocalClient, n: int) -> None:
    for i in range(n):
        await client.create("pods", {"metadata": {"name": f"web-{i}", "labels": {"app": "web"}},
                                     "spec": TEMPLATE["spec"]})
        await client.create("pods", {"apiVersion": "v1", "kind": "Binding",
                                     "metadata": {"name": f"web-{i}", "namespace": "default"},
                                     "target": {"kind": "Node", "name": f"node-{i % 2 + 1}"}},
                            namespace="default", subresource="binding")


async def _all_bound(client: LocalClient, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        pods = (await client.list("pods", namespace="default")).items
        if len(pods) >= n and all(p["spec"].get("nodeName") for p in pods):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(pods)} pods after {timeout}s")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def controllers_running(client: LocalClient, names: tuple[str, ...],
                              *extra: Callable[[asyncio.Event], Coroutine[Any, Any, None]]
                              ) -> AsyncIterator[None]:
    """The named controllers (and `extra` loops, each given the stop event) run on client's
    synced informers until the block ends."""
    stop = asyncio.Event()
    informers = InformerFactory(client)
    runnables = build(client, clock=RealClock(), informers=informers,
                      options=ControllerOptions(controllers=names))
    await informers.start_and_sync(10)
    tasks = [asyncio.create_task(r.run(stop)) for r in runnables]
    tasks += [asyncio.create_task(loop(stop)) for loop in extra]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await informers.stop()


async def _with_controllers(client: LocalClient, n: int, kind: str) -> float:
    async with controllers_running(client, ("replicaset", "deployment", "scheduler")):
        t0 = time.perf_counter()
        spec = {"replicas": n, "selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE}
        resource = "replicasets" if kind == "ReplicaSet" else "deployments"
        await client.create(resource, {"apiVersion": "apps/v1", "kind": kind,
                                       "metadata": {"name": "web"}, "spec": spec})
        await _all_bound(client, n, timeout=60 + n / 10)
        return time.perf_counter() - t0


async def run(args: argparse.Namespace) -> str:
    rows: list[list[Any]] = []
    for n in args.sizes:
        client = await memory_cluster(2)
        t0 = time.perf_counter()
        await _direct(client, n)
        rows.append([n, "direct create+bind", time.perf_counter() - t0])
        for kind in ("ReplicaSet", "Deployment"):
            seconds = await _with_controllers(await memory_cluster(2), n, kind)
            rows.append([n, f"{kind} -> {n} pods bound", seconds])
    return table(["N", "path", "seconds"], rows, value_col=2, group_col=0,
                 ratio_title="vs direct", title="controllers: time to N bound pods (memory)")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench controllers", description=DESCRIPTION)
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 500],
                   help="replica counts to measure (default 100 500)")
    add_loop_option(p)
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    return bench_main(argv, parse, run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
