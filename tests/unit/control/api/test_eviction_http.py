"""`POST pods/NAME/eviction` over HTTP as kubectl drain sees it: 429 TooManyRequests with
kube-apiserver's message and DisruptionBudget cause while the budget allows nothing, 201
and the pod terminating once it allows one, 404 for a missing pod."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from apifixtures import pod

from control.api.app import Settings, create_app
from control.store.memory import MemoryStore

TOKEN = "s3cret"
PODS = "/api/v1/namespaces/default/pods"
PDBS = "/apis/policy/v1/namespaces/default/poddisruptionbudgets"
EVICTION = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "a"}}


@pytest.fixture
async def api() -> AsyncIterator[TestClient]:
    app = create_app(MemoryStore(), Settings(token=TOKEN))
    async with TestClient(TestServer(app),
                          headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        assert (await client.post("/api/v1/namespaces",
                                  json={"metadata": {"name": "default"}})).status == 201
        yield client


async def _running_pod(api: TestClient, name: str) -> None:
    assert (await api.post(PODS, json=pod(name, app="web"))).status == 201
    cur = await (await api.get(f"{PODS}/{name}")).json()
    cur["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    assert (await api.put(f"{PODS}/{name}/status", json=cur)).status == 200


async def _budget(api: TestClient, allowed: int) -> None:
    cur = await (await api.get(f"{PDBS}/web")).json()
    cur["status"] = {"observedGeneration": 1, "disruptionsAllowed": allowed,
                     "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}
    assert (await api.put(f"{PDBS}/web/status", json=cur)).status == 200


async def test_eviction_blocked_then_allowed(api: TestClient) -> None:
    await _running_pod(api, "a")
    assert (await api.post(PDBS, json={
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}})).status == 201
    await _budget(api, 0)
    r = await api.post(f"{PODS}/a/eviction", json=EVICTION)
    body = await r.json()
    assert r.status == 429 and body["reason"] == "TooManyRequests" and body["code"] == 429
    assert body["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert body["details"]["causes"][0]["reason"] == "DisruptionBudget"
    assert body["details"]["causes"][0]["message"] == \
        "The disruption budget web needs 1 healthy pods and has 1 currently"
    assert "deletionTimestamp" not in (await (await api.get(f"{PODS}/a")).json())["metadata"]
    await _budget(api, 1)
    r = await api.post(f"{PODS}/a/eviction", json=EVICTION)
    assert r.status == 201 and (await r.json())["status"] == "Success"
    assert (await api.get(f"{PODS}/a")).status == 404       # no kubelet here: gone at once
    pdb = await (await api.get(f"{PDBS}/web")).json()
    assert pdb["status"]["disruptionsAllowed"] == 0 and "a" in pdb["status"]["disruptedPods"]
    r = await api.post(f"{PODS}/nope/eviction", json={**EVICTION, "metadata": {"name": "nope"}})
    assert r.status == 404
