"""HorizontalPodAutoscaler over HTTP as kube-apiserver serves it (stored in autoscaling/v2,
also served as v1 with conversion; defaults; 422s; `kubectl get hpa` columns) and the
metrics.k8s.io/v1beta1 API computing CPU rates from two kubelet scrapes (a fake fetch)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from control.api.app import Settings, create_app
from control.api.metricsapi import METRICS
from control.store.memory import MemoryStore
from knet.kubelet.resourcemetrics import render

TOKEN = "s3cret"
V1 = "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers"
V2 = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers"
TABLE = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
AUTOSCALE = {"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
             "metadata": {"name": "php-apache"},
             "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                         "name": "php-apache"},
                      "minReplicas": 1, "maxReplicas": 10,
                      "targetCPUUtilizationPercentage": 50}}


@pytest.fixture
async def api() -> AsyncIterator[TestClient]:
    app = create_app(MemoryStore(), Settings(token=TOKEN))
    async with TestClient(TestServer(app), headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        assert (await c.post("/api/v1/namespaces",
                             json={"metadata": {"name": "default"}})).status == 201
        yield c


async def test_v1_create_is_stored_as_v2_and_read_back_in_both(api: TestClient) -> None:
    r = await api.post(V1, json=AUTOSCALE)
    assert r.status == 201, await r.text()
    made = await r.json()
    assert made["apiVersion"] == "autoscaling/v1"
    assert made["spec"]["targetCPUUtilizationPercentage"] == 50
    v2 = await (await api.get(V2 + "/php-apache")).json()
    assert v2["apiVersion"] == "autoscaling/v2"
    assert v2["spec"]["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]
    v2["status"] = {"currentReplicas": 3, "desiredReplicas": 5, "currentMetrics": [
        {"type": "Resource", "resource": {"name": "cpu", "current": {
            "averageUtilization": 250, "averageValue": "500m"}}}], "conditions": [
        {"type": "AbleToScale", "status": "True", "reason": "SucceededRescale",
         "message": "m", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    assert (await api.put(V2 + "/php-apache/status", json=v2)).status == 200
    v1 = await (await api.get(V1 + "/php-apache")).json()
    assert v1["status"]["currentCPUUtilizationPercentage"] == 250
    assert "SucceededRescale" in v1["metadata"]["annotations"][
        "autoscaling.alpha.kubernetes.io/conditions"]
    table = await (await api.get(V2, headers=TABLE)).json()
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name", "Reference", "Targets", "MinPods", "MaxPods", "Replicas", "Age"]
    assert table["rows"][0]["cells"][:6] == ["php-apache", "Deployment/php-apache",
                                             "cpu: 250%/50%", "1", 10, 3]


async def test_defaults_and_invalid_specs(api: TestClient) -> None:
    body = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "d"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "x"}, "maxReplicas": 3,
                     "behavior": {"scaleDown": {"stabilizationWindowSeconds": 10}}}}
    made = await (await api.post(V2, json=body)).json()
    assert made["spec"]["minReplicas"] == 1
    assert made["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 80
    assert made["spec"]["behavior"]["scaleUp"]["policies"][0] == {
        "type": "Pods", "value": 4, "periodSeconds": 15}
    assert made["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 10
    bad = {**body, "metadata": {"name": "bad"},
           "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "x"},
                    "minReplicas": 5, "maxReplicas": 2}}
    r = await api.post(V2, json=bad)
    assert r.status == 422
    causes = (await r.json())["details"]["causes"]
    assert {"reason": "FieldValueInvalid", "field": "spec.maxReplicas",
            "message": "Invalid value: 2: must be greater than or equal to `minReplicas`"
            } in causes


async def test_metrics_api_rates_from_two_scrapes(api: TestClient) -> None:
    node = {"metadata": {"name": "node-1", "annotations": {
        "knet.io/agent-url": "https://127.0.0.1:1"}},
        "status": {"allocatable": {"cpu": "2", "memory": "4Gi"}}}
    assert (await api.post("/api/v1/nodes", json=node)).status == 201
    pod = {"metadata": {"name": "web", "labels": {"run": "web"}},
           "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    assert (await api.post("/api/v1/namespaces/default/pods", json=pod)).status == 201
    answers = [render([("default", "web", "c", 100.0, {"cpu_ns": 1_000_000_000,
                                                       "memory_bytes": 8 << 20})], now=1000.0),
               render([("default", "web", "c", 100.0, {"cpu_ns": 4_000_000_000,
                                                       "memory_bytes": 9 << 20})], now=1010.0)]

    async def fetch(url: str) -> str:
        assert url == "https://127.0.0.1:1/metrics/resource"
        return answers.pop(0)
    metrics = api.server.app[METRICS]
    metrics._fetch = fetch
    await metrics.scrape_once()
    await metrics.scrape_once()
    metrics._task = object()        # scraping "started": the handlers use the two scrapes
    got = await (await api.get("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods"
                               "?labelSelector=run%3Dweb")).json()
    assert got["kind"] == "PodMetricsList"
    [item] = got["items"]
    assert item["metadata"]["name"] == "web" and item["window"] == "10s"
    assert item["containers"] == [{"name": "c", "usage": {"cpu": "300000000n",
                                                          "memory": "9216Ki"}}]
    nodes = await (await api.get("/apis/metrics.k8s.io/v1beta1/nodes")).json()
    assert nodes["items"][0]["usage"] == {"cpu": "300000000n", "memory": "9216Ki"}
    r = await api.get("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/nope")
    assert r.status == 404
    assert (await r.json())["message"] == 'podmetrics.metrics.k8s.io "nope" not found'
    groups = await (await api.get("/apis")).json()
    assert {"name": "metrics.k8s.io", "versions": [{"groupVersion": "metrics.k8s.io/v1beta1",
                                                    "version": "v1beta1"}],
            "preferredVersion": {"groupVersion": "metrics.k8s.io/v1beta1",
                                 "version": "v1beta1"}} in groups["groups"]
    metrics._task = None
