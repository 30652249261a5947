"""CustomResourceDefinitions beyond one version, as kube-apiserver serves them: two served
versions over the same objects (conversion None: only apiVersion differs, each version's
schema validates what is written through it), the scale subresource on the CRD's paths
(`kubectl scale`), and `x-kubernetes-list-type` map/set uniqueness in its words."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from control.api.app import Settings, create_app
from control.models.resources import version_priority
from control.store.memory import MemoryStore

AUTH = {"Authorization": "Bearer t"}
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
V1 = "/apis/stable.example.com/v1/namespaces/default/crontabs"
V1BETA1 = "/apis/stable.example.com/v1beta1/namespaces/default/crontabs"
SPEC_V1 = {"type": "object", "properties": {
    "spec": {"type": "object", "properties": {
        "cronSpec": {"type": "string"}, "replicas": {"type": "integer", "maximum": 10},
        "ports": {"type": "array", "x-kubernetes-list-type": "map",
                  "x-kubernetes-list-map-keys": ["name"],
                  "items": {"type": "object", "required": ["name"],
                            "properties": {"name": {"type": "string"},
                                           "port": {"type": "integer"}}}},
        "tags": {"type": "array", "x-kubernetes-list-type": "set",
                 "items": {"type": "string"}}}},
    "status": {"type": "object", "properties": {"replicas": {"type": "integer"},
                                                "labelSelector": {"type": "string"}}}}}
SPEC_V1BETA1 = {"type": "object", "properties": {
    "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {
        "replicas": {"type": "integer", "maximum": 3}}}}}
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "crontabs.stable.example.com"},
    "spec": {"group": "stable.example.com", "scope": "Namespaced",
             "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab",
                       "shortNames": ["ct"]},
             "versions": [
                 {"name": "v1beta1", "served": True, "storage": False,
                  "schema": {"openAPIV3Schema": SPEC_V1BETA1}},
                 {"name": "v1", "served": True, "storage": True,
                  "schema": {"openAPIV3Schema": SPEC_V1},
                  "subresources": {"status": {}, "scale": {
                      "specReplicasPath": ".spec.replicas",
                      "statusReplicasPath": ".status.replicas",
                      "labelSelectorPath": ".status.labelSelector"}}},
                 {"name": "v0", "served": False, "storage": False,
                  "schema": {"openAPIV3Schema": SPEC_V1BETA1}}]}}


def crontab(version: str, name: str, **spec: object) -> dict:
    return {"apiVersion": f"stable.example.com/{version}", "kind": "CronTab",
            "metadata": {"name": name}, "spec": spec}


@pytest.fixture
async def api() -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(create_app(MemoryStore(), Settings(token="t"))),
                          headers=AUTH) as client:
        assert (await client.post("/api/v1/namespaces",
                                  json={"metadata": {"name": "default"}})).status == 201
        assert (await client.post(CRDS, json=CRD)).status == 201
        for _ in range(100):
            if (await client.get(V1)).status == 200:
                break
            await asyncio.sleep(0.02)
        yield client


def test_kubernetes_version_priority() -> None:
    assert sorted(["v1beta1", "v1alpha1", "v2", "v1", "v1beta2", "foo"],
                  key=version_priority) == ["v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]


async def test_two_versions_serve_the_same_objects(api: TestClient) -> None:
    group = await (await api.get("/apis/stable.example.com")).json()
    assert [v["version"] for v in group["versions"]] == ["v1", "v1beta1"]   # v0 not served
    assert group["preferredVersion"]["version"] == "v1"
    rl = await (await api.get("/apis/stable.example.com/v1beta1")).json()
    assert [r["name"] for r in rl["resources"]] == ["crontabs"]
    assert (await api.get("/apis/stable.example.com/v0/namespaces/default/crontabs")
            ).status == 404
    # written through v1beta1: its schema prunes nothing under spec (preserve-unknown)
    r = await api.post(V1BETA1, json=crontab("v1beta1", "a", replicas=2, legacy="x"))
    assert r.status == 201, await r.text()
    assert (await r.json())["apiVersion"] == "stable.example.com/v1beta1"
    # read through v1: the same object, in v1
    got = await (await api.get(f"{V1}/a")).json()
    assert got["apiVersion"] == "stable.example.com/v1" and got["spec"]["replicas"] == 2
    listed = await (await api.get(V1BETA1)).json()
    assert listed["apiVersion"] == "stable.example.com/v1beta1"
    assert [i["apiVersion"] for i in listed["items"]] == ["stable.example.com/v1beta1"]
    # each version's own schema: 5 replicas pass v1 (max 10) but not v1beta1 (max 3)
    r = await api.post(V1BETA1, json=crontab("v1beta1", "b", replicas=5))
    assert r.status == 422
    assert "spec.replicas in body should be less than or equal to 3" in \
        (await r.json())["message"]
    assert (await api.post(V1, json=crontab("v1", "b", replicas=5))).status == 201
    # a merge patch through v1beta1, then a watch through v1beta1 sees v1beta1 objects
    r = await api.patch(f"{V1BETA1}/b", data=json.dumps({"spec": {"replicas": 1}}),
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status == 200 and (await r.json())["apiVersion"].endswith("/v1beta1")
    async with api.get(V1BETA1, params={"watch": "true", "resourceVersion": "0",
                                        "timeoutSeconds": "1"}) as resp:
        events = [json.loads(line) for line in (await resp.read()).splitlines()]
    assert {e["object"]["apiVersion"] for e in events} == {"stable.example.com/v1beta1"}
    # a delete through v1beta1 answers in v1beta1
    r = await api.delete(f"{V1BETA1}/b")
    assert (await r.json())["apiVersion"] == "stable.example.com/v1beta1"


async def test_scale_subresource_on_the_crd_paths(api: TestClient) -> None:
    assert (await api.post(V1, json=crontab("v1", "s", replicas=1))).status == 201
    r = await api.patch(f"{V1}/s/status", data=json.dumps(
        {"status": {"replicas": 1, "labelSelector": "app=s"}}),
        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status == 200, await r.text()
    scale = await (await api.get(f"{V1}/s/scale")).json()
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 1}
    assert scale["status"] == {"replicas": 1, "selector": "app=s"}
    # kubectl scale: a merge patch of the Scale
    r = await api.patch(f"{V1}/s/scale", data=json.dumps({"spec": {"replicas": 4}}),
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status == 200 and (await r.json())["spec"]["replicas"] == 4
    assert (await (await api.get(f"{V1}/s")).json())["spec"]["replicas"] == 4
    put = copy.deepcopy(await (await api.get(f"{V1}/s/scale")).json())
    put["spec"]["replicas"] = 6
    assert (await api.put(f"{V1}/s/scale", json=put)).status == 200
    assert (await (await api.get(f"{V1}/s")).json())["spec"]["replicas"] == 6
    rl = await (await api.get("/apis/stable.example.com/v1")).json()
    assert {"crontabs/scale", "crontabs/status"} <= {r["name"] for r in rl["resources"]}


async def test_list_type_map_and_set_refuse_duplicates(api: TestClient) -> None:
    r = await api.post(V1, json=crontab("v1", "d", ports=[{"name": "a", "port": 1},
                                                          {"name": "a", "port": 2}],
                                        tags=["x", "y", "x"]))
    assert r.status == 422
    causes = {c["field"]: c["message"] for c in (await r.json())["details"]["causes"]}
    assert causes == {
        "spec.ports[1]": 'Duplicate value: map[string]interface {}{"name":"a"}',
        "spec.tags[2]": 'Duplicate value: "x"'}
    ok = crontab("v1", "d", ports=[{"name": "a", "port": 1}, {"name": "b", "port": 1}],
                 tags=["x", "y"])
    assert (await api.post(V1, json=ok)).status == 201
