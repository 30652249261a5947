"""The `Client` contract, run against both implementations: `LocalClient` in-process and
`HttpClient` over real HTTP to the API app (aiohttp's test server). Same calls, same results,
same errors. Then what only the HTTP client has: auth, unreachable servers, kubeconfig."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from aiohttp.test_utils import TestServer

from control.api.app import OBJECTS, Settings, create_app
from control.api.local import LocalClient
from control.client import ApiUnavailable, HttpClient
from control.clientbase import Client
from control.errors import AlreadyExists, Conflict, Gone, Invalid, NotFound, Unauthorized
from control.informer import Informer
from control.store.memory import MemoryStore

TOKEN = "contract-token"


@dataclass
class Side:
    client: Client
    store: MemoryStore
    url: str = ""


def pod(name: str, **labels: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "knet/whoami"}]}}


def deployment(name: str, replicas: int = 1) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}


@pytest.fixture(params=["local", "http"])
async def side(request: pytest.FixtureRequest) -> AsyncIterator[Side]:
    store = MemoryStore()
    app = create_app(store, Settings(token=TOKEN))
    server = TestServer(app)
    await server.start_server()            # runs the app's startup: the object layer starts
    try:
        if request.param == "local":
            client: Client = LocalClient(app[OBJECTS])
        else:
            client = HttpClient(str(server.make_url("")), token=TOKEN, timeout=5)
        await client.create("namespaces", {"metadata": {"name": "default"}})
        yield Side(client, store, str(server.make_url("")))
        await client.close()
    finally:
        await server.close()


async def test_is_a_client(side: Side) -> None:
    assert isinstance(side.client, Client)


async def test_crud_round_trip(side: Side) -> None:
    c = side.client
    made = await c.create("pods", pod("web-1", app="web"))
    assert made["kind"] == "Pod" and made["apiVersion"] == "v1"
    assert made["metadata"]["namespace"] == "default" and made["metadata"]["uid"]
    got = await c.get("pods", "web-1", namespace="default")
    assert got["metadata"]["uid"] == made["metadata"]["uid"] and got["kind"] == "Pod"
    got["metadata"]["labels"]["tier"] = "fe"
    put = await c.update("pods", got)
    assert put["metadata"]["labels"] == {"app": "web", "tier": "fe"}
    merged = await c.patch("pods", "web-1", {"metadata": {"labels": {"tier": None}}},
                           namespace="default")
    assert merged["metadata"]["labels"] == {"app": "web"}
    jp = await c.patch("pods", "web-1", [{"op": "add", "path": "/metadata/labels/x",
                                          "value": "y"}], patch_type="json", namespace="default")
    assert jp["metadata"]["labels"]["x"] == "y"
    gone = await c.delete("pods", "web-1", namespace="default")
    assert gone["metadata"]["name"] == "web-1"
    with pytest.raises(NotFound, match='pods "web-1" not found'):
        await c.get("pods", "web-1", namespace="default")


async def test_strategic_merge_keeps_containers_by_name(side: Side) -> None:
    c = side.client
    await c.create("deployments", deployment("web"))
    out = await c.patch("deployments", "web", {"spec": {"template": {"spec": {"containers": [
        {"name": "c", "image": "nginx:2"}]}}}}, patch_type="strategic", namespace="default")
    assert out["kind"] == "Deployment" and out["apiVersion"] == "apps/v1"
    assert out["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:2"
    assert out["metadata"]["generation"] == 2


async def test_errors_are_the_same_types(side: Side) -> None:
    c = side.client
    first = await c.create("pods", pod("p"))
    with pytest.raises(AlreadyExists):
        await c.create("pods", pod("p"))
    await c.patch("pods", "p", {"metadata": {"labels": {"a": "b"}}}, namespace="default")
    with pytest.raises(Conflict):
        await c.update("pods", first)                          # stale resourceVersion
    with pytest.raises(Invalid) as err:
        await c.create("pods", pod("Bad_Name"))
    assert any("metadata.name" in cause.field for cause in err.value.causes)
    with pytest.raises(Conflict):
        await c.delete("pods", "p", namespace="default", preconditions_uid="not-the-uid")
    with pytest.raises(NotFound):
        await c.delete("pods", "nope", namespace="default")


async def test_lists_selectors_and_pages(side: Side) -> None:
    c = side.client
    for i in range(5):
        await c.create("pods", pod(f"p{i}", app="web" if i % 2 else "db"))
    everything = await c.list("pods", namespace="default")
    assert len(everything.items) == 5 and int(everything.resource_version) > 0
    assert all(p["kind"] == "Pod" for p in everything.items)
    web = await c.list("pods", namespace="default", label_selector="app in (web)")
    assert sorted(p["metadata"]["name"] for p in web.items) == ["p1", "p3"]
    named = await c.list("pods", field_selector="metadata.name=p4")
    assert [p["metadata"]["name"] for p in named.items] == ["p4"]
    page = await c.list("pods", namespace="default", limit=2)
    names = [p["metadata"]["name"] for p in page.items]
    while page.continue_token:
        page = await c.list("pods", namespace="default", limit=2,
                            continue_token=page.continue_token)
        names += [p["metadata"]["name"] for p in page.items]
    assert names == ["p0", "p1", "p2", "p3", "p4"]


async def test_watch_from_list_revision(side: Side) -> None:
    c = side.client
    await c.create("pods", pod("before"))
    rv = (await c.list("pods", namespace="default")).resource_version
    events: list[tuple[str, str]] = []

    async def consume() -> None:
        stream = c.watch("pods", namespace="default", resource_version=rv)
        async for ev in stream:
            events.append((ev.type, ev.object["metadata"]["name"]))
            assert ev.object["kind"] == "Pod"
            if ev.type == "DELETED":
                break
    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    await c.create("pods", pod("during"))
    await c.patch("pods", "during", {"metadata": {"labels": {"x": "1"}}}, namespace="default")
    await c.delete("pods", "during", namespace="default")
    await asyncio.wait_for(task, 5)
    assert events == [("ADDED", "during"), ("MODIFIED", "during"), ("DELETED", "during")]


async def test_watch_below_compaction_is_gone(side: Side) -> None:
    c = side.client
    await c.create("pods", pod("a"))
    old = (await c.list("pods", namespace="default")).resource_version
    await c.create("pods", pod("b"))
    await side.store.compact(await side.store.current_revision())
    with pytest.raises(Gone):
        async for _ in c.watch("pods", namespace="default", resource_version=old):
            pass


async def test_subresources_status_scale_binding(side: Side) -> None:
    c = side.client
    await c.create("deployments", deployment("web", replicas=1))
    scale = await c.get("deployments", "web", namespace="default", subresource="scale")
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 1
    await c.patch("deployments", "web", {"spec": {"replicas": 3}}, namespace="default",
                  subresource="scale")
    assert (await c.get("deployments", "web", namespace="default"))["spec"]["replicas"] == 3
    d = await c.get("deployments", "web", namespace="default")
    d["status"] = {"replicas": 3, "observedGeneration": 2}
    out = await c.update("deployments", d, subresource="status")
    assert out["status"]["replicas"] == 3
    await c.create("nodes", {"metadata": {"name": "node-1"}})
    await c.create("pods", pod("p"))
    await c.create("pods", {"apiVersion": "v1", "kind": "Binding",
                            "metadata": {"name": "p", "namespace": "default"},
                            "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}},
                   namespace="default", subresource="binding")
    assert (await c.get("pods", "p", namespace="default"))["spec"]["nodeName"] == "node-1"


async def test_informer_runs_on_either_client(side: Side) -> None:
    c = side.client
    await c.create("pods", pod("a"))
    inf = Informer(c, "pods", namespace="default")
    inf.start()
    try:
        await inf.wait_synced(5)
        await c.create("pods", pod("b"))
        for _ in range(300):
            if inf.get("default/b") is not None:
                break
            await asyncio.sleep(0.01)
        assert sorted(inf.keys()) == ["default/a", "default/b"]
    finally:
        await inf.stop()


# ---- HttpClient only --------------------------------------------------------------------

async def test_wrong_token_is_unauthorized() -> None:
    server = TestServer(create_app(MemoryStore(), Settings(token=TOKEN)))
    await server.start_server()
    bad = HttpClient(str(server.make_url("")), token="wrong", timeout=5)
    try:
        with pytest.raises(Unauthorized):
            await bad.list("pods")
    finally:
        await bad.close()
        await server.close()


async def test_unreachable_server_names_the_way_out() -> None:
    client = HttpClient("http://127.0.0.1:9", token="x", timeout=2)
    try:
        with pytest.raises(ApiUnavailable, match="knet control"):
            await client.list("pods")
    finally:
        await client.close()


def test_from_kubeconfig(tmp_path: Path) -> None:
    ca = base64.b64encode(b"not used for http").decode()
    cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "knet",
           "clusters": [{"name": "knet", "cluster": {"server": "http://127.0.0.1:6443/",
                                                      "certificate-authority-data": ca}}],
           "users": [{"name": "admin", "user": {"token": "t0k"}}],
           "contexts": [{"name": "knet", "context": {"cluster": "knet", "user": "admin"}}]}
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    client = HttpClient.from_kubeconfig(path)
    assert client.base_url == "http://127.0.0.1:6443" and client._token == "t0k"
    cfg["current-context"] = "missing"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(Exception, match="no context named 'missing'"):
        HttpClient.from_kubeconfig(path)


async def test_filtered_informer_sees_objects_enter_and_leave(side: Side) -> None:
    """What a kubelet does: watch pods with spec.nodeName=node-1; a pod bound there later
    arrives as an add, a pod deleted leaves as a delete."""
    c = side.client
    await c.create("nodes", {"metadata": {"name": "node-1"}})
    await c.create("pods", pod("elsewhere"))
    inf = Informer(c, "pods", field_selector="spec.nodeName=node-1")
    seen: list[tuple[str, str]] = []
    inf.add_handler(on_add=lambda o: seen.append(("add", o["metadata"]["name"])),
                    on_delete=lambda o: seen.append(("delete", o["metadata"]["name"])))
    inf.start()
    try:
        await inf.wait_synced(5)
        assert inf.keys() == []
        await c.create("pods", pod("p"))
        await c.create("pods", {"apiVersion": "v1", "kind": "Binding",
                                "metadata": {"name": "p", "namespace": "default"},
                                "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}},
                       namespace="default", subresource="binding")
        for _ in range(300):
            if inf.get("default/p") is not None:
                break
            await asyncio.sleep(0.01)
        assert inf.keys() == ["default/p"] and ("add", "p") in seen
        await c.delete("pods", "p", namespace="default", grace_period=0)
        for _ in range(300):
            if inf.get("default/p") is None:
                break
            await asyncio.sleep(0.01)
        assert inf.keys() == [] and seen[-1] == ("delete", "p")
    finally:
        await inf.stop()


async def test_custom_resources_by_group_version_plural(side: Side) -> None:
    c = side.client
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "widgets.example.com"},
           "spec": {"group": "example.com", "scope": "Namespaced",
                    "names": {"plural": "widgets", "kind": "Widget"},
                    "versions": [{"name": "v1", "served": True, "storage": True,
                                  "subresources": {"status": {}}, "schema": {
                                      "openAPIV3Schema": {"type": "object",
                                                          "x-kubernetes-preserve-unknown-fields": True}}}]}}
    await c.create("customresourcedefinitions", crd)
    for _ in range(100):
        got = await c.get("customresourcedefinitions", "widgets.example.com")
        if any(x["type"] == "Established" and x["status"] == "True"
               for x in got.get("status", {}).get("conditions", [])):
            break
        await asyncio.sleep(0.02)
    if isinstance(c, HttpClient):
        with pytest.raises(NotFound, match="discover"):
            await c.get("widgets", "w", namespace="default")
        info = await c.discover("example.com", "v1", "widgets")
        assert info.kind == "Widget" and info.namespaced
    made = await c.create("widgets", {"apiVersion": "example.com/v1", "kind": "Widget",
                                      "metadata": {"name": "w"}, "spec": {"size": 1}},
                          namespace="default")
    assert made["kind"] == "Widget" and made["metadata"]["namespace"] == "default"
    patched = await c.patch("widgets", "w", {"spec": {"size": 2}}, namespace="default")
    assert patched["spec"]["size"] == 2
    assert [o["metadata"]["name"] for o in (await c.list("widgets")).items] == ["w"]
    await c.delete("widgets", "w", namespace="default")
    with pytest.raises(NotFound):
        await c.get("widgets", "w", namespace="default")
