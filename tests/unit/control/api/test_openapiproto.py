"""The gnostic protobuf form of /openapi/v2, read back field by field with a tiny decoder:
the field numbers are those of google/gnostic openapiv2/OpenAPIv2.proto."""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web import Application

from control.api import openapi
from control.api.app import Settings, create_app
from control.api.openapiproto import encode_document
from control.models.resources import RESOURCES, ResourceInfo
from control.store.memory import MemoryStore

Fields = dict[int, list[Any]]


@pytest.fixture
async def api() -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(create_app(MemoryStore(), Settings(token="t"))),
                          headers={"Authorization": "Bearer t"}) as client:
        yield client


def decode(buf: bytes) -> Fields:
    """field number -> values (int for varint, float for fixed64, bytes for length-delimited)."""
    out: Fields = {}
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = struct.unpack_from("<d", buf, i)[0], i + 8
        elif wire == 2:
            size, i = _varint(buf, i)
            value, i = buf[i:i + size], i + size
        else:
            raise AssertionError(f"unexpected wire type {wire}")
        out.setdefault(field, []).append(value)
    return out


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        b = buf[i]
        n |= (b & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if not b & 0x80:
            return n, i


def named(entries: list[bytes]) -> dict[str, bytes]:
    """repeated Named* {name = 1; value = 2} -> {name: encoded value}."""
    out = {}
    for entry in entries:
        f = decode(entry)
        out[f[1][0].decode()] = f[2][0]
    return out


def yaml_of(any_msg: bytes) -> Any:
    return json.loads(decode(any_msg)[2][0])       # Any.yaml = 2 (JSON is YAML)


DOC = {
    "swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.32.0"},
    "paths": {"/api/v1/namespaces/{namespace}/configmaps/{name}": {"patch": {
        "operationId": "patchConfigMap",
        "parameters": [{"name": "fieldValidation", "in": "query", "type": "string",
                        "uniqueItems": True},
                       {"name": "name", "in": "path", "required": True, "type": "string"},
                       {"name": "body", "in": "body", "schema": {"type": "object"}}],
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-group-version-kind": {"group": "", "version": "v1",
                                            "kind": "ConfigMap"}}}},
    "definitions": {
        "io.k8s.api.core.v1.ConfigMap": {
            "description": "ConfigMap holds configuration data.", "type": "object",
            "required": ["metadata"],
            "properties": {
                "data": {"type": "object", "additionalProperties": {"type": "string"}},
                "immutable": {"type": "boolean", "default": False},
                "metadata": {"allOf": [{"$ref": "#/definitions/meta.ObjectMeta"}],
                             "description": "Standard object's metadata."},
                "count": {"type": "integer", "format": "int32", "minimum": -1.5,
                          "maxLength": 5, "oneOf": [{"minimum": 0}]},
                "strict": {"type": "object", "additionalProperties": False},
                "tags": {"type": "array", "items": {"type": "string"},
                         "x-kubernetes-list-type": "set"}},
            "x-kubernetes-group-version-kind": [{"group": "", "version": "v1",
                                                 "kind": "ConfigMap"}]}},
}


def test_document_info_and_definitions_have_gnostic_field_numbers() -> None:
    doc = decode(encode_document(DOC))
    assert doc[1] == [b"2.0"]                                       # swagger = 1
    info = decode(doc[2][0])                                        # info = 2
    assert info[1] == [b"Kubernetes"] and info[2] == [b"v1.32.0"]
    defs = named(decode(doc[9][0])[1])                              # definitions = 9
    cm = decode(defs["io.k8s.api.core.v1.ConfigMap"])
    assert cm[4] == [b"ConfigMap holds configuration data."]        # description = 4
    assert decode(cm[22][0]) == {1: [b"object"]}                    # type = 22 (TypeItem)
    assert cm[19] == [b"metadata"]                                  # required = 19
    ext = named(cm[31])                                             # vendor_extension = 31
    assert yaml_of(ext["x-kubernetes-group-version-kind"]) == [
        {"group": "", "version": "v1", "kind": "ConfigMap"}]
    props = named(decode(cm[25][0])[1])                             # properties = 25
    assert list(props) == ["data", "immutable", "metadata", "count", "strict", "tags"]
    data = decode(props["data"])
    assert decode(decode(data[21][0])[1][0])[22]                    # additionalProperties
    assert decode(props["strict"])[21] == [b"\x10\x00"]             # oneof boolean=2: false
    assert yaml_of(decode(props["immutable"])[5][0]) is False       # default = 5 (Any)
    tags = decode(props["tags"])
    assert decode(decode(tags[23][0])[1][0])[22] == [b"\x0a\x06string"]  # items = 23
    assert named(tags[31])["x-kubernetes-list-type"]


def test_a_described_reference_is_a_plain_ref_and_v3_keys_are_dropped() -> None:
    defs = named(decode(decode(encode_document(DOC))[9][0])[1])
    props = named(decode(decode(defs["io.k8s.api.core.v1.ConfigMap"])[25][0])[1])
    meta = decode(props["metadata"])
    assert meta == {1: [b"#/definitions/meta.ObjectMeta"],          # _ref = 1, no allOf
                    4: [b"Standard object's metadata."]}
    count = decode(props["count"])
    assert count[2] == [b"int32"] and count[9] == [-1.5] and count[11] == [5]
    assert set(count) == {2, 9, 11, 22}                             # oneOf has no field


def test_crd_schemas_follow_the_apiextensions_v2_rules() -> None:
    schema = {"type": "object", "required": ["a", "b"], "properties": {
        "a": {"type": "object", "nullable": True, "properties": {"x": {"type": "string"}}},
        "b": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
              "properties": {"y": {"type": "string"}}},
        "c": {"type": "array", "x-kubernetes-preserve-unknown-fields": True,
              "items": {"type": "string"}},
        "d": {"anyOf": [{"type": "integer"}, {"type": "string"}],
              "x-kubernetes-int-or-string": True}}}
    doc = {"swagger": "2.0", "definitions": {"X": schema}}
    x = decode(named(decode(decode(encode_document(doc))[9][0])[1])["X"])
    assert x[19] == [b"b"]                          # a nullable field is no longer required
    props = {k: decode(v) for k, v in named(decode(x[25][0])[1]).items()}
    assert props["a"] == {}                         # nullable: no type, no properties
    assert set(props["b"]) == {22, 31}              # preserve-unknown-fields: no properties
    assert set(props["c"]) == {31}                  # an array without items loses its type
    assert set(props["d"]) == {31}                  # junctors dropped: any value


def test_paths_operations_parameters_and_responses() -> None:
    paths = decode(decode(encode_document(DOC))[8][0])              # paths = 8
    item = decode(named(paths[2])["/api/v1/namespaces/{namespace}/configmaps/{name}"])
    op = decode(item[8][0])                                         # patch = 8
    assert op[5] == [b"patchConfigMap"]                             # operation_id = 5
    assert yaml_of(named(op[13])["x-kubernetes-group-version-kind"])["kind"] == "ConfigMap"
    query, path, body = (decode(decode(p)[1][0]) for p in op[8])   # ParametersItem.parameter
    q = decode(decode(query[2][0])[3][0])       # non_body_parameter = 2 -> query = 3
    assert q[4] == [b"fieldValidation"] and q[2] == [b"query"] and q[6] == [b"string"]
    assert q[20] == [1]                                             # unique_items = 20
    p = decode(decode(path[2][0])[4][0])        # path_parameter_sub_schema = 4
    assert p[1] == [1] and p[4] == [b"name"] and p[5] == [b"string"]
    b = decode(body[1][0])                                          # body_parameter = 1
    assert b[2] == [b"body"] and decode(decode(b[5][0])[22][0]) == {1: [b"object"]}
    responses = named(decode(op[9][0])[1])                          # responses = 9
    assert decode(decode(responses["200"])[1][0]) == {1: [b"OK"]}   # response.description


def test_negative_integers_are_ten_byte_varints() -> None:
    doc = {"swagger": "2.0", "definitions": {"X": {"minLength": -1}}}
    schema = decode(named(decode(decode(encode_document(doc))[9][0])[1])["X"])
    assert schema[12] == [(1 << 64) - 1]


PROTO = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"


async def test_served_as_protobuf_with_the_json_etag(api: TestClient) -> None:
    r = await api.get("/openapi/v2", headers={"Accept": PROTO})
    assert r.status == 200
    # kube-openapi answers with the dotted spelling: Go's mime parser refuses the `@`
    assert r.headers["Content-Type"] == (
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
    body = await r.read()
    doc = decode(body)
    assert doc[1] == [b"2.0"]
    defs = named(decode(doc[9][0])[1])
    spec = decode(named(decode(decode(defs["io.k8s.api.apps.v1.Deployment"])[25][0])[1])["spec"])
    assert spec[1] == [b"#/definitions/io.k8s.api.apps.v1.DeploymentSpec"]
    replicas = named(decode(decode(defs["io.k8s.api.apps.v1.DeploymentSpec"])[25][0])[1])
    assert decode(decode(replicas["replicas"])[22][0]) == {1: [b"integer"]}
    as_json = await api.get("/openapi/v2", headers={"Accept": "application/json"})
    assert r.headers["ETag"] == as_json.headers["ETag"] and r.headers["Vary"] == "Accept"
    again = await api.get("/openapi/v2", headers={"Accept": PROTO,
                                                  "If-None-Match": r.headers["ETag"]})
    assert again.status == 304
    dotted = await api.get("/openapi/v2", headers={
        "Accept": "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"})
    assert await dotted.read() == body


async def test_accept_order_and_quality_pick_the_form(api: TestClient) -> None:
    r = await api.get("/openapi/v2", headers={"Accept": f"application/json;q=0.5, {PROTO}"})
    assert r.headers["Content-Type"].endswith("+protobuf")
    r = await api.get("/openapi/v2", headers={"Accept": f"application/json, {PROTO}"})
    assert r.headers["Content-Type"] == "application/json"
    r = await api.get("/openapi/v2", headers={"Accept": f"{PROTO};q=0, text/plain"})
    assert r.status == 406


async def test_a_crd_change_reencodes_the_document() -> None:
    extra = ResourceInfo("PriorityClass", "priorityclasses", "scheduling.k8s.io", "v1", False)
    served = list(RESOURCES)
    app = Application()
    api = openapi.build_routes(app, openapi.OpenAPI(lambda: served))
    async with TestClient(TestServer(app)) as client:
        first = await client.get("/openapi/v2", headers={"Accept": PROTO})
        before = named(decode(decode(await first.read())[9][0])[1])
        served.append(extra)
        api.invalidate()
        second = await client.get("/openapi/v2", headers={"Accept": PROTO})
        assert first.headers["ETag"] != second.headers["ETag"]
        defs = named(decode(decode(await second.read())[9][0])[1])
    assert "io.k8s.api.scheduling.v1.PriorityClass" in defs
    assert "io.k8s.api.scheduling.v1.PriorityClass" not in before
