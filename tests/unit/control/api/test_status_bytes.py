"""Error Status bodies byte for byte as kube-apiserver writes them (Go's json.Encoder over
the Status struct): compact, fields in struct order, empty ones omitted, HTML characters
escaped, a trailing newline. Clients (and tests of operators) compare these bytes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from control.api.app import Settings, create_app
from control.store.memory import MemoryStore

TOKEN = "s3cret"


@pytest.fixture
async def api() -> AsyncIterator[TestClient]:
    app = create_app(MemoryStore(), Settings(token=TOKEN, max_body=1000))
    async with TestClient(TestServer(app), headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        assert (await c.post("/api/v1/namespaces",
                             json={"metadata": {"name": "default"}})).status == 201
        yield c


async def test_not_found_bytes(api: TestClient) -> None:
    r = await api.get("/api/v1/namespaces/default/pods/nope")
    assert r.status == 404 and r.content_type == "application/json"
    assert await r.read() == (
        b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
        b'"message":"pods \\"nope\\" not found","reason":"NotFound",'
        b'"details":{"name":"nope","kind":"pods"},"code":404}\n')


async def test_unknown_path_bytes(api: TestClient) -> None:
    r = await api.get("/apis/nope.example.com/v1")
    assert await r.read() == (
        b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
        b'"message":"the server could not find the requested resource","reason":"NotFound",'
        b'"details":{},"code":404}\n')


async def test_invalid_escapes_html_characters_like_go(api: TestClient) -> None:
    r = await api.post("/api/v1/namespaces/default/configmaps",
                       json={"metadata": {"name": "a<b>&c"}})
    body = await r.read()
    assert r.status == 422 and body.endswith(b',"code":422}\n') and body.count(b"\n") == 1
    assert b"<" not in body and b"\\u003c" in body and b"\\u003e" in body
    assert b"\\u0026" in body
    assert body.startswith(b'{"kind":"Status","apiVersion":"v1","metadata":{},'
                           b'"status":"Failure","message":"ConfigMap \\"a\\u003cb\\u003e')
    keys = [b'"message"', b'"reason":"Invalid"', b'"details"', b'"causes"', b'"code"']
    assert [body.index(k) for k in keys] == sorted(body.index(k) for k in keys)


async def test_body_too_large_bytes(api: TestClient) -> None:
    r = await api.post("/api/v1/namespaces/default/configmaps", data=b"{" + b" " * 2000 + b"}",
                       headers={"Content-Type": "application/json"})
    assert r.status == 413
    assert await r.read() == (
        b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
        b'"message":"Request entity too large: limit is 1000",'
        b'"reason":"RequestEntityTooLarge","code":413}\n')
