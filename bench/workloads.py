"""`python -m bench workloads`: how the workload controllers' policies cost time, each beside
an honest anchor in the same run, on the real controllers and scheduler (memory store through
LocalClient, as inside `knet control`) with a kubelet stand-in that reports a bound pod
Running and Ready after `--start` seconds (a container's start time) and removes a deleted
pod at once.

- StatefulSet of N: OrderedReady (pod i+1 only after pod i is Ready) and Parallel, against a
  Deployment of N (anchor). OrderedReady should cost about N x (start + a few round trips).
- DaemonSet on M nodes: time to one Ready pod per node, and a rolling update of its image
  (maxUnavailable 1: one node at a time), against a Deployment of M replicas (anchor) created
  and rolled the same way (its defaults: 25% surge, 25% unavailable).
Wall-clock seconds from the write to the last pod Ready (or updated and Ready). Measurements
only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from bench.common import add_loop_option, bench_main, table
from bench.controllers import controllers_running, memory_cluster
from control.api.local import LocalClient
from control.clock import RealClock, rfc3339
from control.errors import ApiError

NAME = "workloads"
DESCRIPTION = ("StatefulSet OrderedReady vs Parallel vs a Deployment; DaemonSet on M nodes vs "
               "a Deployment of M (create and rolling update)")
CONTROLLERS = ("replicaset", "deployment", "statefulset", "daemonset", "scheduler")


def _template(app: str, image: str = "knet/whoami") -> dict[str, Any]:
    return {"metadata": {"labels": {"app": app}},
            "spec": {"containers": [{"name": "c", "image": image}]}}


async def _kubelet(client: LocalClient, start: float, stop: asyncio.Event) -> None:
    """Bound pods turn Running+Ready `start` s after they are seen; deleted ones go."""
    pending: dict[str, float] = {}
    while not stop.is_set():
        now = time.monotonic()
        for pod in (await client.list("pods", namespace="default")).items:
            md, status = pod["metadata"], pod.get("status") or {}
            uid = md["uid"]
            if md.get("deletionTimestamp"):
                with contextlib.suppress(ApiError):
                    await client.delete("pods", md["name"], namespace="default",
                                        grace_period=0)
                continue
            if not pod["spec"].get("nodeName") or status.get("phase") == "Running":
                continue
            due = pending.setdefault(uid, now + start)
            if now >= due:
                stamp = rfc3339(RealClock().now())
                pod["status"] = {"phase": "Running", "startTime": stamp, "podIP": "10.244.0.9",
                                 "conditions": [{"type": t, "status": "True",
                                                 "lastTransitionTime": stamp}
                                                for t in ("Ready", "ContainersReady")]}
                with contextlib.suppress(ApiError):
                    await client.update("pods", pod, subresource="status")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def _running(nodes: int, start: float) -> AsyncIterator[LocalClient]:
    client = await memory_cluster(nodes)
    async with controllers_running(client, CONTROLLERS, lambda stop: _kubelet(client, start, stop)):
        yield client


async def _until(client: LocalClient, done: Callable[[list[dict[str, Any]]], bool],
                 timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        pods = [p for p in (await client.list("pods", namespace="default")).items
                if not p["metadata"].get("deletionTimestamp")]
        if done(pods):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"not converged after {timeout}s ({len(pods)} pods)")
        await asyncio.sleep(0.01)


def _ready(n: int, image: str | None = None) -> Callable[[list[dict[str, Any]]], bool]:
    def check(pods: list[dict[str, Any]]) -> bool:
        ok = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"
              and (image is None or p["spec"]["containers"][0]["image"] == image)]
        return len(ok) == n == len(pods)
    return check


async def _create(kind: str, n: int, *, nodes: int, start: float, timeout: float,
                  policy: str = "OrderedReady", update: bool = False) -> float:
    """Seconds from creating the workload (or, with `update`, from changing its image) to
    every pod Ready (with the new image)."""
    async with _running(nodes, start) as client:
        resource = {"StatefulSet": "statefulsets", "Deployment": "deployments",
                    "DaemonSet": "daemonsets"}[kind]
        spec: dict[str, Any] = {"selector": {"matchLabels": {"app": "w"}},
                                "template": _template("w")}
        if kind != "DaemonSet":
            spec["replicas"] = n
        if kind == "StatefulSet":
            spec.update(serviceName="w", podManagementPolicy=policy)
        t0 = time.perf_counter()
        obj = await client.create(resource, {"apiVersion": "apps/v1", "kind": kind,
                                             "metadata": {"name": "w"}, "spec": spec})
        await _until(client, _ready(n), timeout)
        if not update:
            return time.perf_counter() - t0
        obj = await client.get(resource, "w", namespace="default")
        obj["spec"]["template"]["spec"]["containers"][0]["image"] = "knet/whoami:v2"
        t0 = time.perf_counter()
        await client.update(resource, obj)
        await _until(client, _ready(n, "knet/whoami:v2"), timeout)
        return time.perf_counter() - t0


async def run(args: argparse.Namespace) -> str:
    n, m, start = args.replicas, args.nodes, args.start
    limit = 30 + n * (start + 1)
    rows: list[list[Any]] = [
        [f"{n} pods", "Deployment (anchor)",
         await _create("Deployment", n, nodes=2, start=start, timeout=limit)],
        [f"{n} pods", "StatefulSet Parallel",
         await _create("StatefulSet", n, nodes=2, start=start, timeout=limit,
                       policy="Parallel")],
        [f"{n} pods", "StatefulSet OrderedReady",
         await _create("StatefulSet", n, nodes=2, start=start, timeout=limit)],
        [f"{m} nodes", "Deployment of M (anchor)",
         await _create("Deployment", m, nodes=m, start=start, timeout=limit)],
        [f"{m} nodes", "DaemonSet",
         await _create("DaemonSet", m, nodes=m, start=start, timeout=limit)],
        [f"{m} nodes: update", "Deployment of M (anchor)",
         await _create("Deployment", m, nodes=m, start=start, timeout=limit, update=True)],
        [f"{m} nodes: update", "DaemonSet (maxUnavailable 1)",
         await _create("DaemonSet", m, nodes=m, start=start, timeout=limit, update=True)],
    ]
    return table(["size", "workload", "seconds to all Ready"], rows, value_col=2, group_col=0,
                 ratio_title="vs anchor",
                 title=f"workloads: memory store, real controllers, pods Ready {start}s "
                       "after binding")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench workloads", description=DESCRIPTION)
    p.add_argument("--replicas", type=int, default=50, help="StatefulSet size (default 50)")
    p.add_argument("--nodes", type=int, default=8, help="DaemonSet nodes (default 8)")
    p.add_argument("--start", type=float, default=0.2,
                   help="seconds from binding to Ready, the kubelet stand-in's container "
                        "start (default 0.2)")
    add_loop_option(p)
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    return bench_main(argv, parse, run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
