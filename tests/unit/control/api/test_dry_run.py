"""Server-side dry run (`kubectl ... --dry-run=server`): every verb answers what it would
return and changes nothing. kubectl sends a delete's dryRun in the DeleteOptions body, other
verbs' in the query."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from apifixtures import deployment

from control.api.app import Settings, create_app
from control.store.memory import MemoryStore

TOKEN = "s3cret"
CMS = "/api/v1/namespaces/default/configmaps"
DEPLOYS = "/apis/apps/v1/namespaces/default/deployments"
DRY_BODY = {"propagationPolicy": "Background", "dryRun": ["All"]}   # what kubectl sends


@pytest.fixture
async def api() -> AsyncIterator[TestClient]:
    app = create_app(MemoryStore(), Settings(token=TOKEN))
    async with TestClient(TestServer(app), headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        for ns in ("default", "kube-system", "team"):
            assert (await c.post("/api/v1/namespaces",
                                 json={"metadata": {"name": ns}})).status == 201
        yield c


def cm(name: str, namespace: str = "default", **md: object) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, **md}, "data": {"a": "1"}}


async def test_delete_dry_run_in_body_keeps_the_object(api: TestClient) -> None:
    await api.post(CMS, json=cm("x"))
    r = await api.delete(f"{CMS}/x", json=DRY_BODY)
    assert r.status == 200 and (await r.json())["metadata"]["name"] == "x"
    assert (await api.get(f"{CMS}/x")).status == 200
    r = await api.delete(f"{CMS}/x", params={"dryRun": "All"})
    assert r.status == 200 and (await api.get(f"{CMS}/x")).status == 200


async def test_foreground_dry_run_answers_the_marked_object_and_writes_nothing(
        api: TestClient) -> None:
    await api.post(DEPLOYS, json=deployment("web"))
    before = await (await api.get(f"{DEPLOYS}/web")).json()
    r = await api.delete(f"{DEPLOYS}/web", json={"propagationPolicy": "Foreground",
                                                "dryRun": ["All"]})
    answer = await r.json()
    assert r.status == 200 and answer["metadata"]["finalizers"] == ["foregroundDeletion"]
    assert answer["metadata"]["deletionTimestamp"]
    after = await (await api.get(f"{DEPLOYS}/web")).json()
    assert after == before


async def test_delete_collection_dry_run(api: TestClient) -> None:
    for name in ("a", "b"):
        await api.post(CMS, json=cm(name))
    r = await api.delete(CMS, json=DRY_BODY)
    assert r.status == 200
    assert sorted(i["metadata"]["name"] for i in (await r.json())["items"]) == ["a", "b"]
    left = await (await api.get(CMS)).json()
    assert sorted(i["metadata"]["name"] for i in left["items"]) == ["a", "b"]


async def test_namespace_dry_run_delete_neither_terminates_nor_drains(api: TestClient) -> None:
    await api.post("/api/v1/namespaces/team/configmaps", json=cm("kept", "team"))
    r = await api.delete("/api/v1/namespaces/team", json=DRY_BODY)
    assert r.status == 200 and (await r.json())["status"]["phase"] == "Terminating"
    ns = await (await api.get("/api/v1/namespaces/team")).json()
    assert ns["status"]["phase"] == "Active" and "deletionTimestamp" not in ns["metadata"]
    assert (await api.get("/api/v1/namespaces/team/configmaps/kept")).status == 200
    r = await api.post("/api/v1/namespaces/team/configmaps", json=cm("new", "team"))
    assert r.status == 201                                  # not terminating


async def test_dry_run_finalizer_removal_does_not_finish_the_deletion(api: TestClient) -> None:
    await api.post(CMS, json=cm("held", finalizers=["example.com/hold"]))
    await api.delete(f"{CMS}/held")
    r = await api.patch(f"{CMS}/held", params={"dryRun": "All"},
                        json={"metadata": {"finalizers": None}},
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status == 200
    got = await (await api.get(f"{CMS}/held")).json()
    assert got["metadata"]["finalizers"] == ["example.com/hold"]


async def test_eviction_dry_run_keeps_the_pod(api: TestClient) -> None:
    pods = "/api/v1/namespaces/default/pods"
    await api.post(pods, json={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                               "spec": {"containers": [{"name": "c", "image": "x"}]}})
    r = await api.post(f"{pods}/p/eviction", json={
        "apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p"},
        "deleteOptions": {"dryRun": ["All"]}})
    assert r.status == 201 and (await api.get(f"{pods}/p")).status == 200


async def test_create_and_patch_dry_run_hold_no_node_port(api: TestClient) -> None:
    svcs = "/api/v1/namespaces/default/services"
    body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}}
    r = await api.post(svcs, json=body, params={"dryRun": "All"})
    assert r.status == 201 and (await r.json())["spec"]["ports"][0]["nodePort"] == 30080
    assert (await api.get(f"{svcs}/s")).status == 404
    assert (await api.post(svcs, json=body)).status == 201      # the port was not kept
    r = await api.patch(f"{svcs}/s", params={"dryRun": "All"},
                        json={"spec": {"ports": [{"port": 80, "nodePort": 30081}]}},
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status == 200 and (await r.json())["spec"]["ports"][0]["nodePort"] == 30081
    got = await (await api.get(f"{svcs}/s")).json()
    assert got["spec"]["ports"][0]["nodePort"] == 30080
    body["metadata"]["name"] = "t"
    body["spec"]["ports"][0]["nodePort"] = 30081
    assert (await api.post(svcs, json=body)).status == 201      # nor was the patched one


async def test_namespace_finalize_dry_run_keeps_the_finalizers(api: TestClient) -> None:
    ns = await (await api.get("/api/v1/namespaces/team")).json()
    ns["spec"]["finalizers"] = []
    r = await api.put("/api/v1/namespaces/team/finalize", json=ns, params={"dryRun": "All"})
    assert r.status == 200 and (await r.json())["spec"]["finalizers"] == []
    got = await (await api.get("/api/v1/namespaces/team")).json()
    assert got["spec"]["finalizers"] == ["kubernetes"]
