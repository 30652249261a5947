"""The HTTP API with aiohttp's test client: discovery, auth, CRUD, lists, watch streams,
patches, subresources, and a Kubernetes Status for every kind of bad input."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from apifixtures import deployment, pod

from control.api.app import Settings, create_app
from control.store.memory import MemoryStore

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PODS = "/api/v1/namespaces/default/pods"
DEPLOYS = "/apis/apps/v1/namespaces/default/deployments"


@pytest.fixture
async def api() -> AsyncIterator[TestClient]:
    app = create_app(MemoryStore(), Settings(token=TOKEN))
    async with TestClient(TestServer(app), headers=AUTH) as client:
        for ns in ("default", "kube-system"):
            r = await client.post("/api/v1/namespaces", json={"metadata": {"name": ns}})
            assert r.status == 201
        yield client


async def status_of(resp: object, code: int, reason: str) -> dict:
    body = await resp.json()                                   # type: ignore[attr-defined]
    assert resp.status == code, body                           # type: ignore[attr-defined]
    assert body["kind"] == "Status" and body["reason"] == reason and body["code"] == code
    return body


async def test_discovery_and_version(api: TestClient) -> None:
    assert (await (await api.get("/api")).json())["versions"] == ["v1"]
    groups = {g["name"]: g for g in (await (await api.get("/apis")).json())["groups"]}
    assert groups["apps"]["versions"] == [{"groupVersion": "apps/v1", "version": "v1"}]
    core = {r["name"]: r for r in (await (await api.get("/api/v1")).json())["resources"]}
    assert core["pods"]["shortNames"] == ["po"] and core["pods"]["namespaced"] is True
    assert core["pods"]["categories"] == ["all"] and core["namespaces"]["namespaced"] is False
    assert {"pods/status", "pods/log", "pods/exec", "pods/binding"} <= set(core)
    apps = {r["name"]: r for r in (await (await api.get("/apis/apps/v1")).json())["resources"]}
    assert (apps["deployments/scale"]["group"], apps["deployments/scale"]["kind"]) == (
        "autoscaling", "Scale")
    version = await (await api.get("/version")).json()
    assert (version["major"], version["minor"]) == ("1", "32")
    await status_of(await api.get("/apis/nope/v1"), 404, "NotFound")


async def test_openapi_v3_has_patch_with_gvk_and_field_validation(api: TestClient) -> None:
    root = await (await api.get("/openapi/v3")).json()
    url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
    doc = await (await api.get(url)).json()
    op = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert op["x-kubernetes-group-version-kind"] == {"group": "apps", "version": "v1",
                                                     "kind": "Deployment"}
    assert "fieldValidation" in [p["name"] for p in op["parameters"]]


async def test_auth(api: TestClient) -> None:
    server = api.server
    async with TestClient(server) as anon:
        # no token: the anonymous user, who may read only the public paths (kube-apiserver)
        body = await status_of(await anon.get("/api/v1/pods"), 403, "Forbidden")
        assert body["message"] == ('pods is forbidden: User "system:anonymous" cannot list '
                                   'resource "pods" in API group "" at the cluster scope')
        assert (await anon.get("/version")).status == 200
        body = await status_of(await anon.post("/api/v1/namespaces/default/pods", json={}),
                               403, "Forbidden")
        assert body["message"].endswith('in API group "" in the namespace "default"')
        wrong = await anon.get("/api/v1/pods", headers={"Authorization": "Bearer nope"})
        assert "does not know" in (await status_of(wrong, 401, "Unauthorized"))["message"]
        assert (await anon.get("/healthz")).status == 200
        assert (await anon.get("/readyz")).status == 200


async def test_crud_over_http(api: TestClient) -> None:
    r = await api.post(PODS, json=pod("a", app="x"))
    created = await r.json()
    assert r.status == 201 and created["kind"] == "Pod"
    await status_of(await api.post(PODS, json=pod("a")), 409, "AlreadyExists")
    r = await api.post(PODS, data="apiVersion: v1\nkind: Pod\nmetadata: {name: b}\nspec:\n"
                       "  containers: [{name: c, image: x}]\n",
                       headers={"Content-Type": "application/yaml"})
    assert r.status == 201
    listed = await (await api.get("/api/v1/pods")).json()
    assert listed["kind"] == "PodList" and listed["metadata"]["resourceVersion"]
    assert [p["metadata"]["name"] for p in listed["items"]] == ["a", "b"]
    sel = await (await api.get(PODS, params={"labelSelector": "app in (x)"})).json()
    assert [p["metadata"]["name"] for p in sel["items"]] == ["a"]
    page = await (await api.get(PODS, params={"limit": "1"})).json()
    assert len(page["items"]) == 1 and page["metadata"]["continue"]
    rest = await (await api.get(PODS, params={"limit": "1",
                                              "continue": page["metadata"]["continue"]})).json()
    assert [p["metadata"]["name"] for p in rest["items"]] == ["b"]
    created["metadata"]["labels"] = {"app": "y"}
    r = await api.put(f"{PODS}/a", json=created)
    assert r.status == 200
    await status_of(await api.put(f"{PODS}/a", json=created), 409, "Conflict")
    r = await api.delete(f"{PODS}/a", json={"propagationPolicy": "Background"})
    assert r.status == 200 and (await r.json())["metadata"]["name"] == "a"
    await status_of(await api.get(f"{PODS}/a"), 404, "NotFound")


async def test_bad_input(api: TestClient) -> None:
    body = await status_of(await api.post(PODS, data="{not json",
                                          headers={"Content-Type": "application/json"}),
                           400, "BadRequest")
    assert "could not be parsed" in body["message"]
    body = await status_of(await api.post(PODS, data="a: [1,", headers={
        "Content-Type": "application/yaml"}), 400, "BadRequest")
    assert "YAML" in body["message"]
    bad = pod("Bad_Name")
    body = await status_of(await api.post(PODS, json=bad), 422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    body = await status_of(await api.post(PODS, json={**pod("x"), "kind": "Service"}),
                           400, "BadRequest")
    broken = deployment("d")
    broken["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    body = await status_of(await api.post(DEPLOYS, json=broken), 422, "Invalid")
    assert any("selector" in c["field"] or "selector" in c["message"]
               for c in body["details"]["causes"]), body
    await status_of(await api.get("/api/v1/widgets"), 404, "NotFound")
    await status_of(await api.get("/nothing/here"), 404, "NotFound")
    await status_of(await api.post(f"{PODS}/x", json=pod("x")), 405, "MethodNotAllowed")
    await api.post(PODS, json=pod("p"))
    await status_of(await api.patch(f"{PODS}/p", data="{}", headers={
        "Content-Type": "application/xml"}), 415, "UnsupportedMediaType")
    huge = json.dumps({**pod("big"), "data": "x" * (3 * 1024 * 1024 + 10)})
    await status_of(await api.post(PODS, data=huge, headers={
        "Content-Type": "application/json"}), 413, "RequestEntityTooLarge")
    await status_of(await api.get(PODS, params={"labelSelector": "a in (b"}), 400,
                    "BadRequest")
    await status_of(await api.get(PODS, params={"continue": "garbage!"}), 400, "BadRequest")
    assert (await api.get(f"{PODS}/p")).status == 200       # nothing half-written broke it
    await status_of(await api.get(f"{PODS}/big"), 404, "NotFound")


async def test_warning_header(api: TestClient) -> None:
    body = pod("w")
    body["spec"]["hostPID"] = True
    r = await api.post(PODS, json=body)
    assert r.status == 201
    assert any("hostPID" in w for w in r.headers.getall("Warning"))
    assert r.headers.getall("Warning")[0].startswith('299 - "')


async def test_patch_types_and_scale(api: TestClient) -> None:
    await api.post(DEPLOYS, json=deployment("web", 2))
    merge = {"Content-Type": "application/merge-patch+json"}
    r = await api.patch(f"{DEPLOYS}/web", json={"metadata": {"labels": {"t": "1"}}},
                        headers=merge)
    assert (await r.json())["metadata"]["labels"] == {"t": "1"}
    r = await api.patch(f"{DEPLOYS}/web", headers={
        "Content-Type": "application/json-patch+json"}, json=[
        {"op": "add", "path": "/metadata/annotations", "value": {"a": "b"}},
        {"op": "replace", "path": "/spec/template", "value": deployment("web")["spec"][
            "template"]}])
    assert (await r.json())["metadata"]["annotations"] == {"a": "b"}
    r = await api.patch(f"{DEPLOYS}/web", headers={
        "Content-Type": "application/json-patch+json"}, json=[
        {"op": "replace", "path": "/metadata/nothing", "value": 1}])
    assert r.status in (400, 422)
    r = await api.patch(f"{DEPLOYS}/web/scale", json={"spec": {"replicas": 5}},
                        headers=merge)
    scale = await r.json()
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 5
    # kubectl scale --current-replicas: GET then PUT of the Scale without a Content-Type
    scale = await (await api.get(f"{DEPLOYS}/web/scale")).json()
    scale["spec"]["replicas"] = 3
    r = await api.put(f"{DEPLOYS}/web/scale", data=json.dumps(scale).encode(),
                      skip_auto_headers={"Content-Type"})
    assert r.status == 200 and (await r.json())["spec"]["replicas"] == 3
    await status_of(await api.put(f"{DEPLOYS}/web/scale", json=scale), 409, "Conflict")
    d = await (await api.get(f"{DEPLOYS}/web")).json()
    assert d["spec"]["replicas"] == 3 and d["metadata"]["generation"] == 3
    r = await api.patch(f"{DEPLOYS}/web", headers={
        "Content-Type": "application/apply-patch+yaml"}, params={"fieldManager": "me"},
        data="apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n"
             "spec: {replicas: 4}\n")
    assert r.status == 200 and (await r.json())["spec"]["replicas"] == 4


async def test_status_subresource_and_binding(api: TestClient) -> None:
    await api.post(PODS, json=pod("p"))
    r = await api.post(f"{PODS}/p/binding", json={
        "apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
        "target": {"kind": "Node", "name": "node-1"}})
    assert r.status == 201
    await status_of(await api.post(f"{PODS}/p/binding", json={
        "metadata": {"name": "p"}, "target": {"name": "node-2"}}), 409, "Conflict")
    p = await (await api.get(f"{PODS}/p")).json()
    p["status"]["phase"] = "Running"
    r = await api.put(f"{PODS}/p/status", json=p)
    assert (await r.json())["status"]["phase"] == "Running"
    body = await status_of(await api.get(f"{PODS}/p/log"), 503, "ServiceUnavailable")
    assert "node-1" in body["message"]


async def read_events(resp: object, n: int) -> list[dict]:
    out = []
    while len(out) < n:
        line = await asyncio.wait_for(resp.content.readline(), 2)   # type: ignore[attr-defined]
        assert line, "stream ended early"
        out.append(json.loads(line))
    return out


async def test_watch_stream(api: TestClient) -> None:
    first = await (await api.post(PODS, json=pod("a", app="x"))).json()
    resp = await api.get(PODS, params={"watch": "true", "resourceVersion": "0",
                                       "labelSelector": "app=x"})
    assert resp.status == 200 and resp.content_type == "application/json"
    await api.post(PODS, json=pod("b", app="x"))
    await api.delete(f"{PODS}/a")
    events = await read_events(resp, 3)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "a"), ("ADDED", "b"), ("DELETED", "a")]
    resp.close()
    since = await api.get(PODS, params={"watch": "1", "timeoutSeconds": "1",
                                        "resourceVersion": first["metadata"]["resourceVersion"]})
    lines = [json.loads(x) for x in (await since.read()).splitlines()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in lines] == [
        ("ADDED", "b"), ("DELETED", "a")]


async def test_watch_gone(api: TestClient) -> None:
    await api.post(PODS, json=pod("a"))
    await api.app[__import__("control.api.keys", fromlist=["OBJECTS"]).OBJECTS].store.compact(2)
    resp = await api.get(PODS, params={"watch": "1", "resourceVersion": "1",
                                       "timeoutSeconds": "1"})
    events = [json.loads(x) for x in (await resp.read()).splitlines()]
    assert events[0]["type"] == "ERROR" and events[0]["object"]["code"] == 410


async def test_namespace_delete_over_http(api: TestClient) -> None:
    await api.post("/api/v1/namespaces", json={"metadata": {"name": "team"}})
    await api.post("/api/v1/namespaces/team/configmaps", json={
        "metadata": {"name": "c"}, "data": {"a": "b"}})
    r = await api.delete("/api/v1/namespaces/team")
    assert r.status == 200
    await status_of(await api.get("/api/v1/namespaces/team"), 404, "NotFound")
    await status_of(await api.post("/api/v1/namespaces/team/configmaps", json={
        "metadata": {"name": "c"}}), 404, "NotFound")


TABLE = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}


async def test_table_responses(api: TestClient) -> None:
    await api.post(PODS, json=pod("a"))
    listed = await (await api.get(PODS, headers=TABLE)).json()
    assert listed["kind"] == "Table" and listed["metadata"]["resourceVersion"]
    assert listed["columnDefinitions"][0]["name"] == "Name"
    assert listed["columnDefinitions"][0]["format"] == "name"
    row = listed["rows"][0]
    assert row["cells"][0] == "a" and row["object"]["metadata"]["name"] == "a"
    one = await (await api.get(f"{PODS}/a", headers=TABLE)).json()
    assert one["kind"] == "Table" and len(one["rows"]) == 1
    resp = await api.get(PODS, params={"watch": "1", "resourceVersion": "0"}, headers=TABLE)
    await api.post(PODS, json=pod("b"))
    first, second = await read_events(resp, 2)
    assert first["object"]["kind"] == "Table" and first["object"]["columnDefinitions"]
    assert second["object"]["rows"][0]["cells"][0] == "b"
    assert not second["object"]["columnDefinitions"]
    resp.close()


async def test_table_rows_carry_what_include_object_asks(api: TestClient) -> None:
    """kubectl --sort-by on a field outside metadata asks includeObject=Object: rows must
    carry the whole object (with only metadata kubectl printed "No resources found")."""
    await api.post(PODS, json=pod("a"))
    whole = await (await api.get(PODS, params={"includeObject": "Object"},
                                 headers=TABLE)).json()
    obj = whole["rows"][0]["object"]
    assert (obj["kind"], obj["apiVersion"]) == ("Pod", "v1")
    assert obj["status"]["phase"] == "Pending" and obj["spec"]["containers"]
    one = await (await api.get(f"{PODS}/a", params={"includeObject": "Object"},
                               headers=TABLE)).json()
    assert one["rows"][0]["object"]["kind"] == "Pod"
    bare = await (await api.get(PODS, params={"includeObject": "None"}, headers=TABLE)).json()
    assert "object" not in bare["rows"][0]
    meta = await (await api.get(PODS, headers=TABLE)).json()
    assert meta["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    await status_of(await api.get(PODS, params={"includeObject": "All"}, headers=TABLE),
                    400, "BadRequest")


async def test_dry_run_collection_delete_eviction_finalize(api: TestClient) -> None:
    r = await api.post(PODS, json=pod("dry"), params={"dryRun": "All"})
    assert r.status == 201 and (await r.json())["metadata"]["name"] == "dry"
    await status_of(await api.get(f"{PODS}/dry"), 404, "NotFound")
    real = await (await api.post(PODS, json=pod("real"))).json()
    r = await api.patch(f"{PODS}/real", params={"dryRun": "All"},
                        json={"metadata": {"labels": {"x": "y"}}},
                        headers={"Content-Type": "application/merge-patch+json"})
    would = await r.json()           # what kubectl diff shows: the change, the same version
    assert would["metadata"]["labels"] == {"x": "y"}
    assert would["metadata"]["resourceVersion"] == real["metadata"]["resourceVersion"]
    assert (await (await api.get(f"{PODS}/real")).json())["metadata"]["labels"] == {}
    await api.delete(f"{PODS}/real")
    for name, app in (("a", "x"), ("b", "x"), ("c", "y")):
        await api.post(PODS, json=pod(name, app=app))
    r = await api.delete(PODS, params={"labelSelector": "app=x"})
    assert sorted(p["metadata"]["name"] for p in (await r.json())["items"]) == ["a", "b"]
    left = await (await api.get(PODS)).json()
    assert [p["metadata"]["name"] for p in left["items"]] == ["c"]
    r = await api.post(f"{PODS}/c/eviction", json={"apiVersion": "policy/v1",
                                                    "kind": "Eviction",
                                                    "metadata": {"name": "c"}})
    assert r.status == 201
    await status_of(await api.get(f"{PODS}/c"), 404, "NotFound")
    await api.post("/api/v1/namespaces", json={"metadata": {"name": "held",
                                                            "finalizers": ["x/y"]}})
    r = await api.delete("/api/v1/namespaces/held")
    assert (await r.json())["status"]["phase"] == "Terminating"
    r = await api.put("/api/v1/namespaces/held/finalize", json={
        "metadata": {"name": "held"}, "spec": {"finalizers": []}})
    assert r.status == 200
    assert (await api.get("/api/v1/namespaces/held")).status == 200   # metadata finalizer
    await api.patch("/api/v1/namespaces/held", json={"metadata": {"finalizers": None}},
                    headers={"Content-Type": "application/merge-patch+json"})
    await status_of(await api.get("/api/v1/namespaces/held"), 404, "NotFound")


async def test_watch_ends_when_the_client_goes_away() -> None:
    store = MemoryStore()
    app = create_app(store, Settings(token=TOKEN))
    async with TestClient(TestServer(app, handler_cancellation=True), headers=AUTH) as api:
        idle = store.active_watches          # the server's own (CustomResourceDefinitions)
        resp = await api.get("/api/v1/pods", params={"watch": "1"})
        for _ in range(50):
            if store.active_watches == idle + 1:
                break
            await asyncio.sleep(0.02)
        assert store.active_watches == idle + 1
        resp.close()
        for _ in range(100):
            if store.active_watches == idle:
                break
            await asyncio.sleep(0.02)
        assert store.active_watches == idle


async def test_watch_bookmarks_carry_filtered_progress() -> None:
    app = create_app(MemoryStore(), Settings(token=TOKEN, bookmark_interval=0.2))
    async with TestClient(TestServer(app), headers=AUTH) as api:
        await api.post("/api/v1/namespaces", json={"metadata": {"name": "default"}})
        resp = await api.get(PODS, params={"watch": "1", "allowWatchBookmarks": "true",
                                           "labelSelector": "app=mine"})
        await api.post(PODS, json=pod("mine", app="mine"))
        other = await (await api.post(PODS, json=pod("other", app="theirs"))).json()
        events = await read_events(resp, 2)
        assert (events[0]["type"], events[0]["object"]["metadata"]["name"]) == ("ADDED", "mine")
        assert events[1]["type"] == "BOOKMARK"
        assert events[1]["object"]["metadata"]["resourceVersion"] == \
            other["metadata"]["resourceVersion"]
        assert events[1]["object"]["kind"] == "Pod"
        resp.close()


async def test_self_subject_review_is_whoami_and_never_stored(api: TestClient) -> None:
    path = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
    r = await api.post(path, json={"apiVersion": "authentication.k8s.io/v1",
                                   "kind": "SelfSubjectReview"})
    body = await r.json()
    assert r.status == 201, body
    assert body["status"]["userInfo"] == {"username": "kubernetes-admin",
                                          "groups": ["system:masters", "system:authenticated"]}
    await status_of(await api.get(path), 405, "MethodNotAllowed")
    async with TestClient(api.server) as anon:
        r = await anon.post(path, json={"kind": "SelfSubjectReview"})
        assert (await r.json())["code"] == 403   # the legacy authorizer: anonymous reads only
