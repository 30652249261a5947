"""/openapi/v2 and /openapi/v3 carry the upstream schemas of every served kind, with ETags."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web import Application

from control.api import openapi
from control.api.app import Settings, create_app
from control.api.schemas import Definitions
from control.models.meshkinds import MESH_RESOURCES
from control.models.resources import RESOURCES, ResourceInfo
from control.store.memory import MemoryStore

AUTH = {"Authorization": "Bearer t"}
SCHEMA = "io.k8s.api.apps.v1.Deployment"


@pytest.fixture
async def api() -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(create_app(MemoryStore(), Settings(token="t"))),
                          headers=AUTH) as client:
        yield client


async def _gv(api: TestClient, path: str) -> dict:
    root = await (await api.get("/openapi/v3")).json()
    r = await api.get(root["paths"][path]["serverRelativeURL"])
    assert r.status == 200 and r.headers["Cache-Control"] == "public, immutable"
    return await r.json()


async def test_v3_group_version_has_the_real_deployment_schema(api: TestClient) -> None:
    doc = await _gv(api, "apis/apps/v1")
    schemas = doc["components"]["schemas"]
    spec = schemas["io.k8s.api.apps.v1.DeploymentSpec"]
    assert spec["properties"]["replicas"] == {
        "description": "Number of desired pods. This is a pointer to distinguish between "
                       "explicit zero and not specified. Defaults to 1.",
        "format": "int32", "type": "integer"}
    assert schemas[SCHEMA]["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "kind": "Deployment", "version": "v1"}]
    # references point inside the document and every one resolves
    ref = schemas[SCHEMA]["properties"]["spec"]["allOf"][0]["$ref"]
    assert ref == "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
    assert "io.k8s.api.core.v1.Container" in schemas          # referenced transitively
    assert schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"] == \
        "int-or-string"
    containers = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    op = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert op["x-kubernetes-group-version-kind"]["kind"] == "Deployment"
    assert "fieldValidation" in [p["name"] for p in op["parameters"]]


async def test_every_served_kind_has_its_schema_in_its_group_version(api: TestClient) -> None:
    defs = Definitions.load()
    # (the mesh's Gateway API and Istio kinds are CRDs: test_mesh_crd_schemas_are_served)
    foreign = ("mesh.knet.dev",)  # knet's own, create-only (WorkloadCertificateRequest)
    for info in (r for r in RESOURCES if r.group not in foreign):
        path = f"apis/{info.group}/{info.version}" if info.group else f"api/{info.version}"
        doc = await _gv(api, path)
        gvks = [g for s in doc["components"]["schemas"].values()
                for g in s.get("x-kubernetes-group-version-kind", [])]
        assert {"group": info.group, "version": info.version, "kind": info.kind} in gvks, \
            info.kind
        assert defs.name_of(info.group, info.version, info.kind) in doc["components"]["schemas"]


async def test_mesh_crd_schemas_are_served(api: TestClient) -> None:
    """The Gateway API and Istio kinds are CRDs installed at start: each is described by its
    official openAPIV3Schema in its group-version document (what `kubectl explain` reads)."""
    for info in MESH_RESOURCES:
        doc = await _gv(api, f"apis/{info.group}/{info.version}")
        name = ".".join(reversed(info.group.split("."))) + f".v1.{info.kind}"
        schema = doc["components"]["schemas"][name]
        assert schema["x-kubernetes-group-version-kind"] == [
            {"group": info.group, "version": "v1", "kind": info.kind}]
        assert schema["properties"]["spec"]["properties"], info.kind
    doc = await _gv(api, "apis/gateway.networking.k8s.io/v1")
    spec = doc["components"]["schemas"]["io.k8s.networking.gateway.v1.HTTPRoute"]["properties"][
        "spec"]
    assert spec["properties"]["rules"]["maxItems"] == 16     # the upstream CRD's own limit


async def test_etag_answers_304_and_a_stale_hash_redirects(api: TestClient) -> None:
    r = await api.get("/openapi/v3")
    etag = r.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"')
    again = await api.get("/openapi/v3", headers={"If-None-Match": etag})
    assert again.status == 304 and again.headers["ETag"] == etag
    stale = await api.get("/openapi/v3/api/v1?hash=0123", allow_redirects=False)
    assert stale.status == 301
    assert stale.headers["Location"].startswith("/openapi/v3/api/v1?hash=")
    assert (await api.get("/openapi/v3/apis/nope/v1")).status == 404


async def test_v2_is_one_swagger_document_with_definitions(api: TestClient) -> None:
    r = await api.get("/openapi/v2", headers={"Accept": "application/json"})
    doc = await r.json()
    assert doc["swagger"] == "2.0" and r.headers["ETag"]
    spec = doc["definitions"][SCHEMA]["properties"]["spec"]
    assert spec["allOf"][0]["$ref"] == "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
    assert "io.k8s.api.core.v1.Pod" in doc["definitions"]
    op = doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"]
    assert {"name": "fieldValidation", "in": "query", "type": "string",
            "uniqueItems": True} in op["parameters"]
    assert (await api.get("/openapi/v2", headers={"Accept": "text/html"})).status == 406


async def test_a_new_resource_gets_its_upstream_schema_without_code() -> None:
    extra = ResourceInfo("PriorityClass", "priorityclasses", "scheduling.k8s.io", "v1", False)
    app = Application()
    openapi.build_routes(app, openapi.OpenAPI(lambda: (*RESOURCES, extra)))
    async with TestClient(TestServer(app)) as client:
        doc = await _gv(client, "apis/scheduling.k8s.io/v1")
    assert "value" in doc["components"]["schemas"][
        "io.k8s.api.scheduling.v1.PriorityClass"]["properties"]
