"""CustomResourceDefinitions over HTTP: the CronTab of the Kubernetes task "Extend the
Kubernetes API with CustomResourceDefinitions" — established, discovered, served, pruned,
defaulted and validated in kube-apiserver's words; deleting the CRD deletes its objects."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from control.api.app import Settings, create_app
from control.store.memory import MemoryStore

AUTH = {"Authorization": "Bearer t"}
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
CTS = "/apis/stable.example.com/v1/namespaces/default/crontabs"
PATTERN = r"^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$"
CRONTAB = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "crontabs.stable.example.com"},
    "spec": {"group": "stable.example.com", "scope": "Namespaced",
             "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab",
                       "shortNames": ["ct"]},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                 "openAPIV3Schema": {"type": "object", "properties": {"spec": {
                     "type": "object", "properties": {
                         "cronSpec": {"type": "string", "pattern": PATTERN},
                         "image": {"type": "string"},
                         "replicas": {"type": "integer", "minimum": 1, "maximum": 10,
                                      "default": 1}}}}}},
                 "additionalPrinterColumns": [
                     {"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"},
                     {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                     {"name": "Age", "type": "date",
                      "jsonPath": ".metadata.creationTimestamp"}]}]}}


def crontab(name: str, **spec: object) -> dict:
    return {"apiVersion": "stable.example.com/v1", "kind": "CronTab",
            "metadata": {"name": name}, "spec": spec}


@pytest.fixture
async def api() -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(create_app(MemoryStore(), Settings(token="t"))),
                          headers=AUTH) as client:
        assert (await client.post("/api/v1/namespaces",
                                  json={"metadata": {"name": "default"}})).status == 201
        yield client


async def _established(api: TestClient, name: str) -> dict:
    for _ in range(100):
        crd = await (await api.get(f"{CRDS}/{name}")).json()
        conds = {c["type"]: c["status"] for c in crd.get("status", {}).get("conditions", [])}
        if conds.get("Established") == "True":
            return crd
        await asyncio.sleep(0.02)
    raise AssertionError(f"{name} was never established: {crd}")


async def test_the_crontab_task(api: TestClient) -> None:
    assert (await api.get(CTS)).status == 404
    assert (await api.post(CRDS, json=CRONTAB)).status == 201
    crd = await _established(api, "crontabs.stable.example.com")
    conds = {c["type"]: c for c in crd["status"]["conditions"]}
    assert conds["NamesAccepted"]["reason"] == "NoConflicts"
    assert crd["status"]["acceptedNames"]["kind"] == "CronTab"
    # discovery
    groups = await (await api.get("/apis")).json()
    assert {"groupVersion": "stable.example.com/v1", "version": "v1"} in [
        v for g in groups["groups"] for v in g["versions"]]
    rl = await (await api.get("/apis/stable.example.com/v1")).json()
    entry = next(r for r in rl["resources"] if r["name"] == "crontabs")
    assert entry["kind"] == "CronTab" and entry["shortNames"] == ["ct"] and entry["namespaced"]
    # create: unknown fields pruned, defaults applied
    r = await api.post(CTS, json=crontab("my-new-cron-object", cronSpec="* * * * */5",
                                         image="my-awesome-cron-image", someRandomField=42))
    assert r.status == 201, await r.text()
    got = await (await api.get(CTS + "/my-new-cron-object")).json()
    assert got["spec"] == {"cronSpec": "* * * * */5", "image": "my-awesome-cron-image",
                           "replicas": 1}
    assert got["kind"] == "CronTab" and got["apiVersion"] == "stable.example.com/v1"
    r = await api.post(CTS + "?fieldValidation=Strict",
                       json=crontab("strict", cronSpec="* * * * */5", someRandomField=42))
    assert (await r.json())["message"] == (
        'CronTab in version "v1" cannot be handled as a CronTab: strict decoding error: '
        'unknown field "spec.someRandomField"')
    # served in OpenAPI (kubectl explain)
    root = await (await api.get("/openapi/v3")).json()
    doc = await (await api.get(root["paths"]["apis/stable.example.com/v1"][
        "serverRelativeURL"])).json()
    schema = doc["components"]["schemas"]["com.example.stable.v1.CronTab"]
    assert set(schema["properties"]) == {"apiVersion", "kind", "metadata", "spec"}
    assert "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" in doc["components"]["schemas"]
    # additionalPrinterColumns
    table = await (await api.get(CTS, headers={
        "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})).json()
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Spec", "Replicas", "Age"]
    row = next(r for r in table["rows"] if r["cells"][0] == "my-new-cron-object")
    assert row["cells"][1:3] == ["* * * * */5", 1] and row["cells"][3].endswith("s")
    assert row["object"]["metadata"]["name"] == "my-new-cron-object"
    resp = await api.get(CTS, params={"watch": "true", "resourceVersion": "0"},
                         headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    event = json.loads(await resp.content.readline())
    resp.close()
    assert event["type"] == "ADDED"
    assert [c["name"] for c in event["object"]["columnDefinitions"]] == [
        "Name", "Spec", "Replicas", "Age"]
    assert event["object"]["rows"][0]["cells"][1:3] == ["* * * * */5", 1]
    # validation in kube-apiserver's words
    r = await api.post(CTS, json=crontab("my-bad", cronSpec="* * * *", image="i", replicas=15))
    body = await r.json()
    assert r.status == 422 and body["reason"] == "Invalid"
    assert body["message"] == (
        'CronTab.stable.example.com "my-bad" is invalid: [spec.cronSpec: Invalid value: '
        f'"* * * *": spec.cronSpec in body should match \'{PATTERN}\', spec.replicas: '
        "Invalid value: 15: spec.replicas in body should be less than or equal to 10]")
    assert [c["field"] for c in body["details"]["causes"]] == ["spec.cronSpec", "spec.replicas"]
    r = await api.post(CTS, json=crontab("typed", replicas="three"))
    assert 'spec.replicas in body must be of type integer: "string"' in (await r.json())[
        "message"]
    # patches: merge yes, strategic merge refused as kube-apiserver does
    r = await api.patch(CTS + "/my-new-cron-object", json={"spec": {"replicas": 3}},
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status == 200 and (await r.json())["spec"]["replicas"] == 3
    r = await api.patch(CTS + "/my-new-cron-object", json={"spec": {"replicas": 11}},
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status == 422
    r = await api.patch(CTS + "/my-new-cron-object", json={"spec": {"replicas": 4}},
                        headers={"Content-Type": "application/strategic-merge-patch+json"})
    assert r.status == 415
    assert "accepted media types include: application/json-patch+json" in (
        await r.json())["message"]
    # deleting the CRD deletes its objects and the kind
    assert (await api.delete(f"{CRDS}/crontabs.stable.example.com")).status == 200
    for _ in range(100):
        if (await api.get(CTS)).status == 404:
            break
        await asyncio.sleep(0.02)
    assert (await api.get(CTS)).status == 404
    assert (await api.get("/apis/stable.example.com/v1")).status == 404


async def test_a_crd_named_wrong_or_taking_a_builtin_plural(api: TestClient) -> None:
    wrong = {**CRONTAB, "metadata": {"name": "crontabs.example.com"}}
    r = await api.post(CRDS, json=wrong)
    assert r.status == 422
    assert ('metadata.name: Invalid value: "crontabs.example.com": must be '
            'spec.names.plural+"."+spec.group') in (await r.json())["message"]
    clash = {**CRONTAB, "metadata": {"name": "pods.stable.example.com"},
             "spec": {**CRONTAB["spec"], "names": {"plural": "pods", "kind": "Pod"}}}
    assert (await api.post(CRDS, json=clash)).status == 201
    for _ in range(100):
        crd = await (await api.get(f"{CRDS}/pods.stable.example.com")).json()
        conds = {c["type"]: c for c in crd.get("status", {}).get("conditions", [])}
        if conds:
            break
        await asyncio.sleep(0.02)
    assert conds["NamesAccepted"]["status"] == "False"
    assert conds["Established"]["status"] == "False"
    assert (await api.get("/apis/stable.example.com/v1/namespaces/default/pods")).status == 404


async def test_status_subresource_and_namespace_deletion_take_custom_objects(
        api: TestClient) -> None:
    crd = {**CRONTAB, "spec": {**CRONTAB["spec"], "versions": [{
        **CRONTAB["spec"]["versions"][0], "subresources": {"status": {}},
        "schema": {"openAPIV3Schema": {"type": "object", "properties": {
            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "status": {"type": "object", "properties": {"phase": {"type": "string"}}}}}}}]}}
    assert (await api.post(CRDS, json=crd)).status == 201
    await _established(api, "crontabs.stable.example.com")
    rl = await (await api.get("/apis/stable.example.com/v1")).json()
    assert "crontabs/status" in [r["name"] for r in rl["resources"]]
    assert (await api.post("/api/v1/namespaces", json={"metadata": {"name": "team"}})).status \
        == 201
    team = "/apis/stable.example.com/v1/namespaces/team/crontabs"
    r = await api.post(team, json=crontab("c", anything={"kept": True}))
    assert r.status == 201 and (await r.json())["spec"] == {"anything": {"kept": True}}
    r = await api.patch(team + "/c/status", json={"status": {"phase": "Ready"}},
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status == 200 and (await r.json())["status"] == {"phase": "Ready"}
    r = await api.patch(team + "/c", json={"status": {"phase": "Lost"}, "spec": {"a": 1}},
                        headers={"Content-Type": "application/merge-patch+json"})
    body = await r.json()
    assert body["status"] == {"phase": "Ready"} and body["spec"]["a"] == 1
    assert (await api.delete("/api/v1/namespaces/team")).status == 200
    for _ in range(100):
        if (await api.get(team + "/c")).status == 404:
            break
        await asyncio.sleep(0.02)
    assert (await api.get(team + "/c")).status == 404
