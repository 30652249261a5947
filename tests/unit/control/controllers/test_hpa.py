"""The HorizontalPodAutoscaler controller on the real object layer with a fake clock and a
fake metrics source: it scales a Deployment through its scale subresource, writes the status
kubectl shows (currentMetrics, conditions) and the Events, and says why it cannot compute
when the pods request no CPU."""

from __future__ import annotations

import copy
from datetime import timedelta

from ctlharness import ControllerHarness

from control.api.local import LocalClient
from control.clock import FakeClock, rfc3339
from control.models.metrics import ContainerUsage, PodUsage


class FakeMetrics:
    """Usage by pod name: every pod of the namespace uses `millis` of CPU."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock, self.millis = clock, 0.0
        self.names: list[str] = []

    async def pod_usage(self, namespace: str) -> dict[str, PodUsage]:
        out = {}
        for name in self.names:
            out[name] = PodUsage(namespace, name, self.clock.now().timestamp(), 15.0,
                                 (ContainerUsage("php", self.millis * 1e6, 10 << 20),))
        return out


def deployment(name: str, requests: dict | None) -> dict:
    container = {"name": "php", "image": "registry.k8s.io/hpa-example"}
    if requests:
        container["resources"] = {"requests": requests}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"run": name}},
                     "template": {"metadata": {"labels": {"run": name}},
                                  "spec": {"containers": [container]}}}}


def hpa(name: str, **spec: object) -> dict:
    """An HPA `NAME-hpa` on Deployment NAME (not the same name: under the fake clock, Events
    of two recorders about same-named objects at one instant would share a name)."""
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": f"{name}-hpa"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                        "name": name},
                     "minReplicas": 1, "maxReplicas": 10,
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                         "type": "Utilization", "averageUtilization": 50}}}], **spec}}


async def start(client: LocalClient, clock: FakeClock, metrics: FakeMetrics
                ) -> ControllerHarness:
    h = ControllerHarness(LocalClient(client.objects, metrics=metrics), clock)
    await h.start("deployment", "replicaset", "horizontalpodautoscaling")
    return h


async def run_pods(h: ControllerHarness, metrics: FakeMetrics, selector: str) -> list[str]:
    """Mark the pods Running and Ready, started an hour ago, and give each a metric."""
    names = []
    for pod in await h.pods(selector=selector):
        if not (pod.get("status") or {}).get("startTime"):
            cur = await h.mark_pod(pod)
            cur = copy.deepcopy(cur)
            cur["status"]["startTime"] = rfc3339(h.clock.now() - timedelta(hours=1))
            await h.client.update("pods", cur, subresource="status")
        names.append(pod["metadata"]["name"])
    metrics.names = names
    return names


def condition(obj: dict, ctype: str) -> dict:
    return next(c for c in obj["status"]["conditions"] if c["type"] == ctype)


async def test_scales_up_under_load_with_status_and_event(client: LocalClient,
                                                          clock: FakeClock) -> None:
    metrics = FakeMetrics(clock)
    h = await start(client, clock, metrics)
    try:
        await client.create("deployments", deployment("php", {"cpu": "200m"}),
                            namespace="default")
        await h.eventually(lambda: h.pods(selector="run=php"), what="the first pod")
        await run_pods(h, metrics, "run=php")
        metrics.millis = 500.0                             # 250% of the 200m request
        await client.create("horizontalpodautoscalers", hpa("php"), namespace="default")

        async def scaled() -> bool:
            d = await client.get("deployments", "php", namespace="default")
            return d["spec"]["replicas"] == 4
        await h.eventually(scaled, what="scale to 4 (the limit: twice, at least 4)")
        got = await client.get("horizontalpodautoscalers", "php-hpa", namespace="default")

        async def has_status() -> dict | None:
            o = await client.get("horizontalpodautoscalers", "php-hpa", namespace="default")
            return o if (o.get("status") or {}).get("desiredReplicas") == 4 else None
        got = await h.eventually(has_status, what="the status")
        assert got["status"]["currentMetrics"] == [{"type": "Resource", "resource": {
            "name": "cpu", "current": {"averageUtilization": 250, "averageValue": "500m"}}}]
        assert condition(got, "AbleToScale")["reason"] == "SucceededRescale"
        assert condition(got, "ScalingActive")["reason"] == "ValidMetricFound"
        limited = condition(got, "ScalingLimited")
        assert (limited["status"], limited["reason"]) == ("True", "ScaleUpLimit")
        events = (await client.list("events", namespace="default")).items
        assert any(e["reason"] == "SuccessfulRescale" and e["message"] ==
                   "New size: 4; reason: cpu resource utilization (percentage of request) "
                   "above target" for e in events)

        # load stops: nothing happens inside the 300 s window, then down to 1
        async def four() -> bool:
            return len(await h.pods(selector="run=php")) == 4
        await h.eventually(four, what="four pods")
        await run_pods(h, metrics, "run=php")
        metrics.millis = 0.0
        for _ in range(8):
            await clock.advance(15)
            await h.settle(5)
        d = await client.get("deployments", "php", namespace="default")
        assert d["spec"]["replicas"] >= 4
        for _ in range(16):
            await clock.advance(15)
            await h.settle(5)

        async def down() -> bool:
            d = await client.get("deployments", "php", namespace="default")
            return d["spec"]["replicas"] == 1
        await h.eventually(down, what="scale back down to 1 after the window")
    finally:
        await h.stop()


async def test_no_cpu_requests_says_why_it_cannot_compute(client: LocalClient,
                                                          clock: FakeClock) -> None:
    metrics = FakeMetrics(clock)
    h = await start(client, clock, metrics)
    try:
        await client.create("deployments", deployment("bare", None), namespace="default")
        await h.eventually(lambda: h.pods(selector="run=bare"), what="the pod")
        names = await run_pods(h, metrics, "run=bare")
        metrics.millis = 100.0
        await client.create("horizontalpodautoscalers", hpa("bare"), namespace="default")

        async def inactive() -> dict | None:
            o = await client.get("horizontalpodautoscalers", "bare-hpa", namespace="default")
            conds = (o.get("status") or {}).get("conditions") or []
            return o if any(c["type"] == "ScalingActive" for c in conds) else None
        got = await h.eventually(inactive, what="ScalingActive")
        active = condition(got, "ScalingActive")
        assert (active["status"], active["reason"]) == ("False", "FailedGetResourceMetric")
        assert active["message"] == (
            "the HPA was unable to compute the replica count: failed to get cpu utilization: "
            f"missing request for cpu in container php of Pod {names[0]}")
        events = {e["reason"] for e in (await client.list("events",
                                                          namespace="default")).items}
        assert {"FailedGetResourceMetric", "FailedComputeMetricsReplicas"} <= events
    finally:
        await h.stop()
