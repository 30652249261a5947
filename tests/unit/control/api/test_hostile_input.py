"""Hostile request bodies and query parameters over HTTP: each is refused with a 4xx Status,
nothing of it is stored, and the server keeps serving (issue 10, API side)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]
from aiohttp.test_utils import TestClient, TestServer
from apifixtures import pod

from control.api.app import Settings, create_app
from control.api.untrusted import MAX_DEPTH
from control.store.memory import MemoryStore
from control.store.sqlite import SqliteStore

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PODS = "/api/v1/namespaces/default/pods"
CMS = "/api/v1/namespaces/default/configmaps"
JSON = {"Content-Type": "application/json"}
YAML = {"Content-Type": "application/yaml"}

# 436 bytes that a plain yaml.safe_load turns into 9**7 strings (~63 MB once encoded).
LAUGHS = b"""apiVersion: v1
kind: Pod
metadata:
  name: laughs
spec:
  containers: [{name: c, image: knet/whoami}]
  x:
    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
"""


async def _api(store: object) -> AsyncIterator[TestClient]:
    app = create_app(store, Settings(token=TOKEN))              # type: ignore[arg-type]
    async with TestClient(TestServer(app), headers=AUTH) as client:
        r = await client.post("/api/v1/namespaces", json={"metadata": {"name": "default"}})
        assert r.status == 201
        yield client


@pytest.fixture
async def api() -> AsyncIterator[TestClient]:
    async for client in _api(MemoryStore()):
        yield client


async def refused(resp: object, code: int, reason: str, *words: str) -> str:
    body = await resp.json()                                   # type: ignore[attr-defined]
    assert resp.status == code, body                           # type: ignore[attr-defined]
    assert body["kind"] == "Status" and body["reason"] == reason and body["code"] == code
    for word in words:
        assert word in body["message"], body["message"]
    return str(body["message"])


async def names(api: TestClient, path: str) -> list[str]:
    r = await api.get(path)
    assert r.status == 200
    return [i["metadata"]["name"] for i in (await r.json())["items"]]


def nested_cm(name: str, levels: int) -> bytes:
    """A ConfigMap whose JSON nests `levels` deep in all (the object itself is level 1)."""
    inner = levels - 1
    return (b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"%s"},"x":'
            % name.encode() + b'{"a":' * inner + b"1" + b"}" * inner + b"}")


# -- nesting depth -------------------------------------------------------------------------

async def test_json_nested_100000_levels_is_a_400_and_the_server_lives_on(
        api: TestClient) -> None:
    body = b'{"apiVersion":"v1","kind":"Pod","metadata":{"name":"deep"},"x":' + \
        b'{"a":' * 100_000 + b"1" + b"}" * 100_001
    await refused(await api.post(PODS, data=body, headers=JSON), 400, "BadRequest",
                  "create pods", f"more than {MAX_DEPTH} levels deep")
    assert (await api.post(PODS, json=pod("after"))).status == 201
    assert await names(api, PODS) == ["after"]


async def test_a_3mb_array_of_arrays_is_refused_before_parsing(api: TestClient) -> None:
    await refused(await api.post(PODS, data=b"[" * (3 * 1024 * 1024 - 1), headers=JSON),
                  400, "BadRequest", "levels deep")


async def test_depth_limit_boundary_and_brackets_inside_strings(api: TestClient) -> None:
    assert (await api.post(CMS, data=nested_cm("at-limit", MAX_DEPTH), headers=JSON)).status \
        == 201
    await refused(await api.post(CMS, data=nested_cm("over", MAX_DEPTH + 1), headers=JSON),
                  400, "BadRequest", "levels deep")
    brackets = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "text"},
                "data": {"k": "[{" * 5000 + '\\"', "j": "]" * 10}}
    assert (await api.post(CMS, json=brackets)).status == 201
    assert sorted(await names(api, CMS)) == ["at-limit", "text"]


async def test_deep_patch_bodies_are_refused_too(api: TestClient) -> None:
    assert (await api.post(CMS, json={"metadata": {"name": "p"}, "data": {"a": "1"}})).status \
        == 201
    deep = b'{"data":' + b"[" * 5000 + b"]" * 5000 + b"}"
    for ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json",
                  "application/json-patch+json", "application/apply-patch+yaml"):
        await refused(await api.patch(f"{CMS}/p", data=deep, headers={"Content-Type": ctype}),
                      400, "BadRequest", "levels deep")


async def test_yaml_nested_too_deep_is_a_400(api: TestClient) -> None:
    deep = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: y}\nx: " + \
        b"[" * 50_000 + b"]" * 50_000 + b"\n"
    await refused(await api.post(CMS, data=deep, headers=YAML), 400, "BadRequest",
                  "YAML body nests more than")
    ok = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\nx: " + \
        b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"\n"
    assert (await api.post(CMS, data=ok, headers=YAML)).status == 201
    assert await names(api, CMS) == ["ok"]


# -- YAML aliases ------------------------------------------------------------------------

async def test_billion_laughs_is_refused_as_too_large_and_not_stored(api: TestClient) -> None:
    assert len(LAUGHS) < 512
    await refused(await api.post(PODS, data=LAUGHS, headers=YAML), 413,
                  "RequestEntityTooLarge", "excessive aliasing", "limit is 3145728")
    assert await names(api, PODS) == []


async def test_an_alias_inside_its_own_anchor_is_a_400(api: TestClient) -> None:
    body = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: loop}\nx: &a [1, *a]\n"
    await refused(await api.post(CMS, data=body, headers=YAML), 400, "BadRequest",
                  "alias inside its own anchor")


async def test_ordinary_yaml_aliases_still_work(api: TestClient) -> None:
    body = (b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: anchors\n"
            b"  labels: &l {app: web}\n  annotations: *l\ndata: {a: x, b: y}\n")
    r = await api.post(CMS, data=body, headers=YAML)
    assert r.status == 201, await r.text()
    md = (await r.json())["metadata"]
    assert md["labels"] == md["annotations"] == yaml.safe_load(body)["metadata"]["labels"]


# -- query parameters --------------------------------------------------------------------

@pytest.mark.parametrize("rv,problem", [("abc", "invalid syntax"), ("-1", "invalid syntax"),
                                        ("99999999999999999999", "value out of range")])
async def test_resource_version_must_be_a_uint64_everywhere(api: TestClient, rv: str,
                                                            problem: str) -> None:
    assert (await api.post(PODS, json=pod("p"))).status == 201
    for path in (f"{PODS}?resourceVersion={rv}", f"{PODS}/p?resourceVersion={rv}",
                 f"{PODS}?watch=true&resourceVersion={rv}"):
        await refused(await api.get(path), 400, "BadRequest",
                      f'resourceVersion: Invalid value: "{rv}"', problem)


async def test_negative_limit_lists_everything_as_kube_apiserver_does(api: TestClient) -> None:
    for name in ("a", "b", "c"):
        assert (await api.post(PODS, json=pod(name))).status == 201
    assert await names(api, f"{PODS}?limit=-5") == ["a", "b", "c"]
    await refused(await api.get(f"{PODS}?limit=99999999999999999999"), 400, "BadRequest",
                  "limit")
    await refused(await api.get(f"{PODS}?limit=1e3"), 400, "BadRequest", "limit")


async def test_timeout_seconds_is_an_integer_and_negative_ends_the_watch(
        api: TestClient) -> None:
    await refused(await api.get(f"{PODS}?watch=true&timeoutSeconds=abc"), 400, "BadRequest",
                  "timeoutSeconds")
    r = await asyncio.wait_for(api.get(f"{PODS}?watch=true&timeoutSeconds=-3"), 5)
    assert r.status == 200 and await asyncio.wait_for(r.read(), 5) == b""


async def test_watch_from_the_largest_revision_fails_no_concurrent_create(
        tmp_path: Path) -> None:
    """On SQLite, such a watch once failed the other clients' creates in its group commit."""
    store = SqliteStore(str(tmp_path / "knet.db"))
    try:
        async for api in _api(store):
            watch = await api.get(f"{PODS}?watch=true&resourceVersion={2**64 - 1}"
                                  "&timeoutSeconds=2")
            assert watch.status == 200
            creates = await asyncio.gather(*(api.post(PODS, json=pod(f"p{i}"))
                                             for i in range(40)))
            assert [r.status for r in creates] == [201] * 40
            assert await asyncio.wait_for(watch.read(), 5) == b""
    finally:
        await store.close()


def test_laughs_really_expand_with_a_plain_loader() -> None:
    """The fixture is the real thing: safe_load would build 9**7 strings."""
    x = yaml.safe_load(LAUGHS)["spec"]["x"]
    assert len(json.dumps(x["c"])) * 9 ** 4 > 3 * 1024 * 1024


@pytest.mark.parametrize("options,field", [({"gracePeriodSeconds": "abc"}, "gracePeriodSeconds"),
                                           ({"gracePeriodSeconds": 1e308}, "gracePeriodSeconds"),
                                           ({"preconditions": "x"}, "preconditions"),
                                           ({"preconditions": {"uid": 5}}, "uid"),
                                           ({"propagationPolicy": ["x"]}, "propagationPolicy")])
async def test_delete_options_of_the_wrong_type_are_a_400(api: TestClient, options: dict,
                                                          field: str) -> None:
    assert (await api.post(PODS, json=pod("kept"))).status == 201
    await refused(await api.delete(f"{PODS}/kept", json=options), 400, "BadRequest",
                  f"{field}: cannot decode")
    assert await names(api, PODS) == ["kept"]


async def test_a_continue_token_beyond_uint64_is_a_400(api: TestClient) -> None:
    token = base64.urlsafe_b64encode(json.dumps(
        {"v": 1, "rv": 10**24, "start": "/registry/pods/default/"}).encode()).decode()
    await refused(await api.get(f"{PODS}?limit=1&continue={token}"), 400, "BadRequest",
                  "continue token")
