"""fieldValidation Strict/Warn/Ignore over HTTP, checked against kube-apiserver's words
(kubernetes test/integration/apiserver/field_validation_test.go)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from control.api.app import Settings, create_app
from control.store.memory import MemoryStore

AUTH = {"Authorization": "Bearer t"}
DEPLOYS = "/apis/apps/v1/namespaces/default/deployments"
JSON = {"Content-Type": "application/json"}

# upstream's invalidBodyJSON: duplicates and unknown fields at three depths
INVALID = """{
  "apiVersion": "apps/v1", "kind": "Deployment",
  "metadata": {"name": "%s", "name": "%s", "unknownMeta": "metaVal"},
  "spec": {"unknown1": "val1", "unknownDupe": "valDupe", "unknownDupe": "valDupe2",
           "paused": true, "paused": false,
           "selector": {"matchLabels": {"app": "nginx"}},
           "template": {"metadata": {"labels": {"app": "nginx"}},
                        "spec": {"containers": [{"name": "nginx", "image": "nginx:latest",
                                                 "unknownNested": "val1",
                                                 "imagePullPolicy": "Always",
                                                 "imagePullPolicy": "Never"}]}}}}"""
FOUND = ['duplicate field "metadata.name"', 'unknown field "metadata.unknownMeta"',
         'unknown field "spec.unknown1"', 'unknown field "spec.unknownDupe"',
         'duplicate field "spec.paused"',
         'unknown field "spec.template.spec.containers[0].unknownNested"',
         'duplicate field "spec.template.spec.containers[0].imagePullPolicy"']


@pytest.fixture
async def api() -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(create_app(MemoryStore(), Settings(token="t"))),
                          headers=AUTH) as client:
        assert (await client.post("/api/v1/namespaces",
                                  json={"metadata": {"name": "default"}})).status == 201
        yield client


def _warnings(r: object) -> list[str]:
    out = []
    for header in r.headers.getall("Warning", []):          # type: ignore[attr-defined]
        assert header.startswith('299 - "') and header.endswith('"')
        out.append(header[7:-1].replace('\\"', '"'))
    return out


async def test_strict_refuses_naming_every_field_in_document_order(api: TestClient) -> None:
    r = await api.post(DEPLOYS + "?fieldValidation=Strict", data=INVALID % ("a", "a"),
                       headers=JSON)
    body = await r.json()
    assert r.status == 400 and body["reason"] == "BadRequest", body
    assert body["message"] == ('Deployment in version "v1" cannot be handled as a Deployment: '
                               "strict decoding error: " + ", ".join(FOUND))
    assert (await api.get(DEPLOYS + "/a")).status == 404


@pytest.mark.parametrize("query", ["?fieldValidation=Warn", ""])
async def test_warn_and_the_default_answer_warnings_and_drop_the_fields(
        api: TestClient, query: str) -> None:
    r = await api.post(DEPLOYS + query, data=INVALID % ("w", "w"), headers=JSON)
    assert r.status == 201, await r.text()
    assert _warnings(r) == FOUND
    stored = await (await api.get(DEPLOYS + "/w")).json()
    assert "unknown1" not in stored["spec"] and stored["spec"]["paused"] is False
    assert "unknownNested" not in stored["spec"]["template"]["spec"]["containers"][0]


async def test_ignore_is_silent(api: TestClient) -> None:
    r = await api.post(DEPLOYS + "?fieldValidation=Ignore", data=INVALID % ("i", "i"),
                       headers=JSON)
    assert r.status == 201 and _warnings(r) == []
    assert "unknown1" not in (await (await api.get(DEPLOYS + "/i")).json())["spec"]


async def test_misspellings_in_yaml_and_a_bad_mode(api: TestClient) -> None:
    yaml_body = ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: y}\nspec:\n"
                 "  replica: 2\n  selector: {matchLabels: {app: y}}\n  template:\n"
                 "    metadata: {labels: {app: y}}\n    spec:\n      containers:\n"
                 "      - {name: c, image: nginx, prots: [{containerPort: 80}]}\n")
    r = await api.post(DEPLOYS + "?fieldValidation=Strict", data=yaml_body,
                       headers={"Content-Type": "application/yaml"})
    assert (await r.json())["message"].endswith(
        'strict decoding error: unknown field "spec.replica", '
        'unknown field "spec.template.spec.containers[0].prots"')
    r = await api.post(DEPLOYS + "?fieldValidation=Loud", data=yaml_body,
                       headers={"Content-Type": "application/yaml"})
    assert r.status == 400 and "Strict, Warn or Ignore" in (await r.json())["message"]


async def test_patches_list_duplicates_then_sorted_unknowns(api: TestClient) -> None:
    good = INVALID.replace('"name": "%s", "name": "%s", "unknownMeta": "metaVal"',
                           '"name": "p"')
    assert (await api.post(DEPLOYS + "?fieldValidation=Ignore", data=good,
                           headers=JSON)).status == 201
    patch = ('{"spec": {"unknown1": "v", "unknownDupe": "a", "unknownDupe": "b", '
             '"paused": true, "paused": false, "template": {"spec": {"containers": [{'
             '"name": "nginx", "unknownNested": "v", "imagePullPolicy": "Always", '
             '"imagePullPolicy": "Never"}], "$setElementOrder/containers": [{"name": "nginx"}]'
             "}}}}")
    for ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
        r = await api.patch(DEPLOYS + "/p?fieldValidation=Strict", data=patch,
                            headers={"Content-Type": ctype})
        assert r.status == 400
        assert (await r.json())["message"].endswith(
            'strict decoding error: duplicate field "spec.unknownDupe", duplicate field '
            '"spec.paused", duplicate field "spec.template.spec.containers[0].imagePullPolicy", '
            'unknown field "spec.template.spec.containers[0].unknownNested", unknown field '
            '"spec.unknown1", unknown field "spec.unknownDupe"')
    r = await api.patch(DEPLOYS + "/p", data='{"spec": {"replica": 3}}',
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status == 200 and _warnings(r) == ['unknown field "spec.replica"']


async def test_server_side_apply_refuses_an_unknown_field(api: TestClient) -> None:
    body = ('{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, '
            '"dta": {"a": "b"}}')
    r = await api.patch("/api/v1/namespaces/default/configmaps/c?fieldManager=m", data=body,
                        headers={"Content-Type": "application/apply-patch+yaml"})
    assert r.status == 400
    assert (await r.json())["message"] == (
        "failed to create typed patch object (default/c; v1, Kind=ConfigMap): "
        ".dta: field not declared in schema")


async def test_free_form_fields_are_not_unknown(api: TestClient) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": "free", "labels": {"any": "x"}, "annotations": {"b": "c"}},
          "data": {"whatever": "1"}}
    r = await api.post("/api/v1/namespaces/default/configmaps?fieldValidation=Strict", json=cm)
    assert r.status == 201 and _warnings(r) == []
