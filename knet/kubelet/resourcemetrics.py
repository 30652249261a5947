"""The kubelet's `/metrics/resource`: each running container's cumulative CPU time and memory
working set, read from its own cgroups, in the Prometheus text format metrics-server scrapes.

Names, labels and HELP lines are the kubelet's (pkg/kubelet/metrics/collectors/
resource_metrics.go): `container_cpu_usage_seconds_total`, `container_memory_working_set_bytes`
and `container_start_time_seconds` per container, `pod_*` per pod and `node_*` for the node,
each sample with its timestamp in milliseconds. knet's nodes share one kernel, so a node's
usage here is the sum of its pods' containers (not the host's): `kubectl top node` shows what
the pods scheduled there use. Reading the cgroup files is a few small reads per container,
done inline on the request (metrics-server asks once per resolution period).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

__all__ = ["PATH", "add_routes", "render"]

PATH = "/metrics/resource"
_HELP = {
    "container_cpu_usage_seconds_total": ("counter", ("[STABLE] Cumulative cpu time consumed by "
                                          "the container in core-seconds")),
    "container_memory_working_set_bytes": ("gauge", ("[STABLE] Current working set of the "
                                           "container in bytes")),
    "container_start_time_seconds": ("gauge", ("[STABLE] Start time of the container since "
                                     "unix epoch in seconds")),
    "node_cpu_usage_seconds_total": ("counter", ("[STABLE] Cumulative cpu time consumed by the "
                                     "node in core-seconds")),
    "node_memory_working_set_bytes": ("gauge", ("[STABLE] Current working set of the node in "
                                      "bytes")),
    "pod_cpu_usage_seconds_total": ("counter", ("[STABLE] Cumulative cpu time consumed by the "
                                    "pod in core-seconds")),
    "pod_memory_working_set_bytes": ("gauge", ("[STABLE] Current working set of the pod in "
                                     "bytes")),
    "scrape_error": ("gauge", ("[ALPHA] 1 if there was an error while getting container "
                     "metrics, 0 otherwise")),
}


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{_quote(v)}"' for k, v in labels.items())
    return "{" + inner + "}" if inner else ""


def render(samples: Iterable[tuple[str, str, str, float, dict[str, int]]], *,
           now: float, error: bool = False) -> str:
    """The exposition text of `samples` (namespace, pod, container, start time, usage with
    `cpu_ns` and `memory_bytes`) read at `now` (seconds since the epoch)."""
    lines: dict[str, list[str]] = {name: [] for name in _HELP}
    ts = int(now * 1000)
    pods: dict[tuple[str, str], list[int]] = {}
    node = [0, 0]
    for ns, pod, container, started, usage in samples:
        lab = _labels(container=container, namespace=ns, pod=pod)
        cpu, mem = usage.get("cpu_ns", 0), usage.get("memory_bytes", 0)
        lines["container_cpu_usage_seconds_total"].append(f"{lab} {cpu / 1e9:.9f} {ts}")
        lines["container_memory_working_set_bytes"].append(f"{lab} {mem} {ts}")
        lines["container_start_time_seconds"].append(f"{lab} {started:.3f} {ts}")
        acc = pods.setdefault((ns, pod), [0, 0])
        acc[0] += cpu
        acc[1] += mem
        node[0] += cpu
        node[1] += mem
    for (ns, pod), (cpu, mem) in pods.items():
        lab = _labels(namespace=ns, pod=pod)
        lines["pod_cpu_usage_seconds_total"].append(f"{lab} {cpu / 1e9:.9f} {ts}")
        lines["pod_memory_working_set_bytes"].append(f"{lab} {mem} {ts}")
    lines["node_cpu_usage_seconds_total"].append(f" {node[0] / 1e9:.9f} {ts}")
    lines["node_memory_working_set_bytes"].append(f" {node[1]} {ts}")
    lines["scrape_error"].append(f" {1 if error else 0}")
    out: list[str] = []
    for name, (kind, doc) in _HELP.items():
        if lines[name]:
            out += [f"# HELP {name} {doc}", f"# TYPE {name} {kind}"]
            out += [name + rest for rest in lines[name]]
    return "\n".join(out) + "\n"


def _collect(workers: Iterable[Any], runtime: Any) -> tuple[list[Any], bool]:
    usage = getattr(runtime, "usage", None)
    out: list[tuple[str, str, str, float, dict[str, int]]] = []
    error = False
    for w in workers:
        if getattr(w, "sandbox", None) is None:
            continue
        md = w.pod.get("metadata") or {}
        app = {c.get("name") for c in (w.pod.get("spec") or {}).get("containers") or []}
        for runner in w.runners:
            h = runner.handle
            if h is None or runner.c.get("name") not in app or usage is None \
                    or not runtime.running(h):
                continue
            try:
                out.append((md.get("namespace", ""), md.get("name", ""), runner.c["name"],
                            float(h.started_at), usage(h)))
            except (OSError, ValueError, EOFError) as exc:
                log.debug("%s/%s: no usage for container %s: %s", md.get("namespace"),
                          md.get("name"), runner.c.get("name"), exc)
                error = True
    return out, error


def add_routes(app: web.Application, workers: Callable[[], Iterable[Any]], runtime: Any, *,
               clock: Callable[[], float] = time.time) -> None:
    """Serve `/metrics/resource` on the kubelet app from the pod workers `workers()` gives."""

    async def resource(request: web.Request) -> web.Response:
        samples, error = _collect(list(workers()), runtime)
        return web.Response(text=render(samples, now=clock(), error=error),
                            content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    app.router.add_get(PATH, resource)
