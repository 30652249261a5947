"""The resource metrics API, metrics.k8s.io/v1beta1 (PodMetrics, NodeMetrics), served by the
API server itself the way metrics-server serves it behind the aggregator.

`ResourceMetrics` scrapes every node agent's `/metrics/resource` (knet.kubelet.resourcemetrics:
cumulative CPU seconds and memory working set per container, from its cgroups) over the
kubelet's HTTPS with the API server's kubelet client certificate, once per `resolution`
seconds (metrics-server's --metric-resolution, default 15 s), and keeps each node's last two
scrapes: CPU usage is the rate between them, as metrics-server computes it. Scraping starts on
the first question (kubectl top, the HPA controller), so a cluster that never asks pays
nothing; the first answer has data about a second later. It also is the HPA controller's
`MetricsSource` (control.models.metrics) in the same process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from control.api import codec
from control.api.keys import OBJECTS
from control.api.nodeproxy import AGENT_URL_ANNOTATION, KUBELET_TLS
from control.api.objects import ObjectService
from control.errors import ApiError, NotFound
from control.models.metrics import ContainerUsage, PodUsage

log = logging.getLogger(__name__)

__all__ = ["DISCOVERY", "GROUP_VERSION", "METRICS", "ResourceMetrics", "add_routes",
           "parse_scrape"]

GROUP_VERSION = "metrics.k8s.io/v1beta1"
DISCOVERY = {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION,
             "resources": [
                 {"name": "nodes", "singularName": "", "namespaced": False,
                  "kind": "NodeMetrics", "verbs": ["get", "list"]},
                 {"name": "pods", "singularName": "", "namespaced": True,
                  "kind": "PodMetrics", "verbs": ["get", "list"]}]}
_FIRST_INTERVAL = 1.0
_SCRAPE_TIMEOUT = 10.0

Fetch = Callable[[str], Awaitable[str]]
Sample = tuple[float, float, float]            # cumulative cpu seconds, working set, ts (s)


@dataclass
class _Scrape:
    containers: dict[tuple[str, str, str], tuple[float, float, float, float]]
    node: Sample | None


def parse_scrape(text: str) -> _Scrape:
    """One `/metrics/resource` answer: per (namespace, pod, container) its cumulative CPU
    seconds, working set bytes, sample time and start time; the node's CPU and memory."""
    cpu: dict[tuple[str, str, str], tuple[float, float]] = {}
    mem: dict[tuple[str, str, str], float] = {}
    start: dict[tuple[str, str, str], float] = {}
    node_cpu = node_mem = None
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.labels.get("namespace", ""), s.labels.get("pod", ""),
                   s.labels.get("container", ""))
            ts = float(s.timestamp) if s.timestamp is not None else time.time()
            if s.name == "container_cpu_usage_seconds_total":
                cpu[key] = (s.value, ts)
            elif s.name == "container_memory_working_set_bytes":
                mem[key] = s.value
            elif s.name == "container_start_time_seconds":
                start[key] = s.value
            elif s.name == "node_cpu_usage_seconds_total":
                node_cpu = (s.value, ts)
            elif s.name == "node_memory_working_set_bytes":
                node_mem = s.value
    containers = {k: (v, mem.get(k, 0.0), ts, start.get(k, 0.0)) for k, (v, ts) in cpu.items()}
    node = (node_cpu[0], node_mem or 0.0, node_cpu[1]) if node_cpu is not None else None
    return _Scrape(containers, node)


class ResourceMetrics:
    """The last two scrapes of each node, and the rates they give (see module docstring)."""

    def __init__(self, objects: ObjectService, *, resolution: float = 15.0,
                 fetch: Fetch | None = None,
                 tls: Callable[[], ssl.SSLContext | None] = lambda: None) -> None:
        self.objects, self.resolution = objects, resolution
        self._fetch = fetch or self._https
        self._tls = tls
        self._scrapes: dict[str, list[_Scrape]] = {}      # node -> [previous, latest]
        self._task: asyncio.Task[None] | None = None
        self._first = asyncio.Event()

    def __repr__(self) -> str:
        return f"<ResourceMetrics every {self.resolution}s nodes={sorted(self._scrapes)}>"

    # ---- scraping ----------------------------------------------------------------------

    async def _https(self, url: str) -> str:
        timeout = aiohttp.ClientTimeout(total=_SCRAPE_TIMEOUT)
        connector = aiohttp.TCPConnector(ssl=self._tls() or True)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session, \
                session.get(url) as resp:
            if resp.status != 200:
                raise aiohttp.ClientError(f"{url}: HTTP {resp.status}")
            return await resp.text()

    async def _scrape_node(self, node: dict[str, Any]) -> None:
        name = node["metadata"]["name"]
        url = (node["metadata"].get("annotations") or {}).get(AGENT_URL_ANNOTATION)
        if not url:
            return
        try:
            scrape = parse_scrape(await self._fetch(str(url).rstrip("/")
                                                    + "/metrics/resource"))
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            log.info("node %s: metrics scrape failed: %s", name, exc)
            return
        kept = self._scrapes.setdefault(name, [])
        kept.append(scrape)
        del kept[:-2]

    async def scrape_once(self) -> None:
        nodes = (await self.objects.list("nodes")).items
        await asyncio.gather(*(self._scrape_node(n) for n in nodes))
        for gone in set(self._scrapes) - {n["metadata"]["name"] for n in nodes}:
            del self._scrapes[gone]

    async def _loop(self) -> None:
        interval = _FIRST_INTERVAL
        while True:
            try:
                await self.scrape_once()
            except ApiError as exc:
                log.warning("metrics: cannot list nodes: %s", exc)
            except Exception:       # one bad scrape must not stop the metrics for good
                log.exception("metrics: scrape failed; trying again in %ss", self.resolution)
            if len(self._scrapes) and all(len(v) == 2 for v in self._scrapes.values()):
                self._first.set()
            await asyncio.sleep(interval)
            interval = self.resolution

    async def started(self, wait: float = 3.0) -> None:
        """Start scraping if not yet; on the first call, wait (at most `wait` s) for rates."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="metrics-scraper")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._first.wait(), wait)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    # ---- rates -------------------------------------------------------------------------

    def _pods_of(self, node: str) -> dict[tuple[str, str], PodUsage]:
        kept = self._scrapes.get(node) or []
        if len(kept) < 2:
            return {}
        prev, last = kept
        rates: dict[tuple[str, str], list[ContainerUsage]] = {}
        times: dict[tuple[str, str], tuple[float, float]] = {}
        broken: set[tuple[str, str]] = set()
        for (ns, pod, container), (cpu, mem, ts, started) in last.containers.items():
            before = prev.containers.get((ns, pod, container))
            if before is None or before[3] != started or cpu < before[0] or ts <= before[2]:
                broken.add((ns, pod))        # new or restarted: no rate until next scrape
                continue
            window = ts - before[2]
            rates.setdefault((ns, pod), []).append(
                ContainerUsage(container, (cpu - before[0]) / window * 1e9, int(mem)))
            times[(ns, pod)] = (ts, window)
        return {k: PodUsage(k[0], k[1], times[k][0], times[k][1], tuple(v))
                for k, v in rates.items() if k not in broken}

    def pods(self) -> dict[tuple[str, str], PodUsage]:
        out: dict[tuple[str, str], PodUsage] = {}
        for node in self._scrapes:
            out.update(self._pods_of(node))
        return out

    def node(self, name: str) -> tuple[float, int, float, float] | None:
        """(cpu nanocores, memory bytes, timestamp, window) of one node, if known."""
        kept = self._scrapes.get(name) or []
        if len(kept) < 2 or kept[0].node is None or kept[1].node is None:
            return None
        (c0, _, t0), (c1, m1, t1) = kept[0].node, kept[1].node
        if t1 <= t0 or c1 < c0:
            return None
        return (c1 - c0) / (t1 - t0) * 1e9, int(m1), t1, t1 - t0

    async def pod_usage(self, namespace: str) -> dict[str, PodUsage]:
        await self.started()
        return {name: u for (ns, name), u in self.pods().items() if ns == namespace}


# ---- the API -------------------------------------------------------------------------

METRICS = web.AppKey("resource_metrics", ResourceMetrics)


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _window(seconds: float) -> str:
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


def _usage(cpu_nanocores: float, memory: int) -> dict[str, str]:
    return {"cpu": f"{int(cpu_nanocores)}n", "memory": f"{memory // 1024}Ki"}


def _md(obj: dict[str, Any], now: str) -> dict[str, Any]:
    src = obj["metadata"]
    md: dict[str, Any] = {"name": src["name"], "creationTimestamp": now}
    if src.get("namespace"):
        md["namespace"] = src["namespace"]
    if src.get("labels"):
        md["labels"] = src["labels"]
    return md


def pod_metrics(pod: dict[str, Any], u: PodUsage, now: str) -> dict[str, Any]:
    return {"kind": "PodMetrics", "apiVersion": GROUP_VERSION, "metadata": _md(pod, now),
            "timestamp": _stamp(u.timestamp), "window": _window(u.window),
            "containers": [{"name": c.name, "usage": _usage(c.cpu_nanocores, c.memory_bytes)}
                           for c in u.containers]}


def add_routes(app: web.Application, *, resolution: float = 15.0) -> None:
    """The metrics.k8s.io/v1beta1 routes (add before the generic REST catch-all)."""
    base = "/apis/" + GROUP_VERSION

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        app[METRICS] = ResourceMetrics(app[OBJECTS], resolution=resolution,
                                       tls=lambda: app.get(KUBELET_TLS))
        yield
        await app[METRICS].stop()

    async def pods(request: web.Request) -> web.Response:
        ns, name = request.match_info.get("namespace"), request.match_info.get("name")
        metrics = request.app[METRICS]
        await metrics.started()
        usage, now = metrics.pods(), _stamp(time.time())
        if name is not None:
            u = usage.get((ns or "", name))
            if u is None:
                raise NotFound(f'podmetrics.metrics.k8s.io "{name}" not found', name=name,
                               kind="pods")
            pod = await request.app[OBJECTS].get("pods", name, namespace=ns)
            return codec.respond(pod_metrics(pod, u, now))
        listed = await request.app[OBJECTS].list(
            "pods", namespace=ns, label_selector=request.query.get("labelSelector"),
            field_selector=request.query.get("fieldSelector"))
        items = [pod_metrics(p, usage[key], now) for p in listed.items
                 if (key := (p["metadata"].get("namespace", ""), p["metadata"]["name"]))
                 in usage]
        return codec.respond({"kind": "PodMetricsList", "apiVersion": GROUP_VERSION,
                              "metadata": {}, "items": items})

    async def nodes(request: web.Request) -> web.Response:
        name = request.match_info.get("name")
        metrics = request.app[METRICS]
        await metrics.started()
        now = _stamp(time.time())
        objs = ([await request.app[OBJECTS].get("nodes", name)] if name else
                (await request.app[OBJECTS].list(
                    "nodes", label_selector=request.query.get("labelSelector"))).items)
        items = []
        for node in objs:
            got = metrics.node(node["metadata"]["name"])
            if got is not None:
                items.append({"kind": "NodeMetrics", "apiVersion": GROUP_VERSION,
                              "metadata": _md(node, now), "timestamp": _stamp(got[2]),
                              "window": _window(got[3]), "usage": _usage(got[0], got[1])})
        if name:
            if not items:
                raise NotFound(f'nodemetrics.metrics.k8s.io "{name}" not found', name=name,
                               kind="nodes")
            return codec.respond(items[0])
        return codec.respond({"kind": "NodeMetricsList", "apiVersion": GROUP_VERSION,
                              "metadata": {}, "items": items})

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get(base + "/pods", pods)
    app.router.add_get(base + "/namespaces/{namespace}/pods", pods)
    app.router.add_get(base + "/namespaces/{namespace}/pods/{name}", pods)
    app.router.add_get(base + "/nodes", nodes)
    app.router.add_get(base + "/nodes/{name}", nodes)
