"""The object layer through LocalClient on the memory store: metadata, lists, selectors,
continue tokens, updates, optimistic concurrency, the status split, patches, scale, binding."""

from __future__ import annotations

import asyncio

import pytest
from apifixtures import deployment, pod

from control.api.local import LocalClient
from control.api.objects import ObjectService
from control.clientbase import Client
from control.errors import AlreadyExists, BadRequest, Conflict, Invalid, NotFound


def test_local_client_is_a_client(client: LocalClient) -> None:
    assert isinstance(client, Client)


async def test_create_fills_metadata(client: LocalClient) -> None:
    out = await client.create("pods", pod("web-1"))
    md = out["metadata"]
    assert md["namespace"] == "default" and md["generation"] == 1
    assert len(md["uid"]) == 36 and md["creationTimestamp"].endswith("Z")
    assert out["kind"] == "Pod" and out["apiVersion"] == "v1"
    assert out["status"]["phase"] == "Pending"
    got = await client.get("pods", "web-1", namespace="default")
    assert got["metadata"]["resourceVersion"] == md["resourceVersion"]


async def test_generate_name(client: LocalClient) -> None:
    body = pod("")
    body["metadata"] = {"generateName": "web-"}
    a = await client.create("pods", body)
    b = await client.create("pods", body)
    assert a["metadata"]["name"].startswith("web-") and len(a["metadata"]["name"]) == 9
    assert a["metadata"]["name"] != b["metadata"]["name"]


async def test_create_errors(client: LocalClient) -> None:
    await client.create("pods", pod("a"))
    with pytest.raises(AlreadyExists, match='pods "a" already exists'):
        await client.create("pods", pod("a"))
    with pytest.raises(NotFound, match='namespaces "nope" not found'):
        await client.create("pods", pod("b"), namespace="nope")
    wrong = pod("c")
    wrong["kind"] = "Service"
    with pytest.raises(BadRequest, match="does not match"):
        await client.create("pods", wrong)
    stale = pod("d")
    stale["metadata"]["resourceVersion"] = "5"
    with pytest.raises(BadRequest, match="resourceVersion should not be set"):
        await client.create("pods", stale)
    with pytest.raises(NotFound, match="could not find the requested resource"):
        await client.create("widgets", pod("e"))


async def test_list_selectors_and_continue(client: LocalClient) -> None:
    for i in range(7):
        await client.create("pods", pod(f"p{i}", tier="web" if i % 2 else "db"))
    web = await client.list("pods", label_selector="tier=web")
    assert [p["metadata"]["name"] for p in web.items] == ["p1", "p3", "p5"]
    notweb = await client.list("pods", label_selector="tier notin (web)")
    assert len(notweb.items) == 4
    named = await client.list("pods", field_selector="metadata.name!=p0")
    assert len(named.items) == 6
    names, token = [], None
    while True:
        page = await client.list("pods", limit=3, continue_token=token)
        names += [p["metadata"]["name"] for p in page.items]
        token = page.continue_token
        if not token:
            break
    assert names == [f"p{i}" for i in range(7)]
    with pytest.raises(BadRequest, match="field label not supported"):
        await client.list("pods", field_selector="spec.bogus=1")
    assert (await client.list("pods", namespace="kube-system")).items == []


async def test_update_conflict_and_generation(client: LocalClient) -> None:
    d = await client.create("deployments", deployment("web"))
    d["spec"]["replicas"] = 3
    d2 = await client.update("deployments", d)
    assert d2["metadata"]["generation"] == 2
    with pytest.raises(Conflict, match="the object has been modified"):
        await client.update("deployments", d)          # stale resourceVersion
    d2["metadata"]["labels"] = {"x": "y"}
    d3 = await client.update("deployments", d2)
    assert d3["metadata"]["generation"] == 2            # metadata-only change


async def test_status_split(client: LocalClient) -> None:
    d = await client.create("deployments", deployment("web"))
    d["status"] = {"replicas": 9}
    d["spec"]["replicas"] = 2
    main = await client.update("deployments", d)
    assert "replicas" not in main.get("status", {}) and main["spec"]["replicas"] == 2
    main["status"] = {"replicas": 2, "observedGeneration": 2}
    main["spec"]["replicas"] = 7
    st = await client.update("deployments", main, subresource="status")
    assert st["status"]["replicas"] == 2 and st["spec"]["replicas"] == 2
    assert st["metadata"]["generation"] == 2


async def test_patches(client: LocalClient) -> None:
    await client.create("pods", pod("p", app="a", tier="x"))
    out = await client.patch("pods", "p", {"metadata": {"labels": {"tier": None, "n": "1"}}})
    assert out["metadata"]["labels"] == {"app": "a", "n": "1"}
    out = await client.patch("pods", "p", {"spec": {"containers": [
        {"name": "c", "image": "busybox"}]}}, patch_type="strategic")
    assert [(c["name"], c["image"]) for c in out["spec"]["containers"]] == [("c", "busybox")]
    await client.create("deployments", deployment("d"))
    out = await client.patch("deployments", "d", {"spec": {"template": {"spec": {
        "containers": [{"name": "side", "image": "busybox"}]}}}}, patch_type="strategic")
    assert [c["name"] for c in out["spec"]["template"]["spec"]["containers"]] == ["c", "side"]
    out = await client.patch("pods", "p", [{"op": "replace", "path": "/metadata/labels/app",
                                            "value": "b"}], patch_type="json")
    assert out["metadata"]["labels"]["app"] == "b"
    with pytest.raises(Invalid):
        await client.patch("pods", "p", [{"op": "test", "path": "/metadata/name",
                                          "value": "q"}], patch_type="json")
    with pytest.raises(NotFound):
        await client.patch("pods", "nope", {"metadata": {}})


async def test_server_side_apply_creates_then_merges(client: LocalClient) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
          "data": {"a": "1"}}
    first = await client.patch("configmaps", "cfg", cm, patch_type="apply",
                               field_manager="me")
    assert first["data"] == {"a": "1"}
    cm["data"] = {"b": "2"}
    second = await client.patch("configmaps", "cfg", cm, patch_type="apply",
                                field_manager="me")
    assert second["data"] == {"a": "1", "b": "2"}
    assert second["metadata"]["uid"] == first["metadata"]["uid"]


async def test_scale(client: LocalClient) -> None:
    await client.create("deployments", deployment("web", 2))
    scale = await client.get("deployments", "web", subresource="scale")
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 2
    assert scale["status"]["selector"] == "app=web"
    scale["spec"]["replicas"] = 4
    out = await client.update("deployments", scale, subresource="scale")
    assert out["spec"]["replicas"] == 4
    out = await client.patch("deployments", "web", {"spec": {"replicas": 1}},
                             subresource="scale")
    d = await client.get("deployments", "web")
    assert d["spec"]["replicas"] == 1 and d["metadata"]["generation"] == 3
    with pytest.raises(Conflict):
        await client.update("deployments", scale, subresource="scale")   # stale rv
    with pytest.raises(NotFound):
        await client.get("pods", "x", subresource="scale")


async def test_binding(client: LocalClient) -> None:
    await client.create("pods", pod("p"))
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
               "target": {"kind": "Node", "name": "node-1"}}
    await client.create("pods", binding, namespace="default", subresource="binding")
    got = await client.get("pods", "p", namespace="default")
    assert got["spec"]["nodeName"] == "node-1"
    assert {"PodScheduled": "True"} == {c["type"]: c["status"]
                                         for c in got["status"]["conditions"]}
    with pytest.raises(Conflict, match="already assigned"):
        await client.create("pods", binding, namespace="default", subresource="binding")


async def test_watch_from_zero_and_selector_moves(client: LocalClient) -> None:
    await client.create("pods", pod("a", app="x"))
    events: list[tuple[str, str]] = []

    async def consume() -> None:
        async for ev in client.watch("pods", namespace="default", label_selector="app=x"):
            events.append((ev.type, ev.object["metadata"]["name"]))

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.01)
    await client.create("pods", pod("b", app="y"))                      # invisible
    await client.patch("pods", "b", {"metadata": {"labels": {"app": "x"}}})  # moves in
    await client.patch("pods", "a", {"metadata": {"labels": {"app": "z"}}})  # moves out
    await client.delete("pods", "b", namespace="default")
    await asyncio.sleep(0.01)
    task.cancel()
    assert events == [("ADDED", "a"), ("ADDED", "b"), ("DELETED", "a"), ("DELETED", "b")]


async def test_watch_from_resource_version(client: LocalClient) -> None:
    first = await client.create("pods", pod("a"))
    await client.create("pods", pod("b"))
    stream = client.watch("pods", resource_version=first["metadata"]["resourceVersion"])
    ev = await asyncio.wait_for(stream.__anext__(), 1)
    assert (ev.type, ev.object["metadata"]["name"]) == ("ADDED", "b")
    await stream.aclose()


async def test_objects_start_rebuilds_allocations(objects: ObjectService) -> None:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
           "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}}
    await objects.create("services", svc)
    fresh = ObjectService(objects.store, admit=objects.admit)
    await fresh.start()
    svc["metadata"]["name"] = "t"
    with pytest.raises(Invalid, match="provided port is already allocated") as err:
        await fresh.create("services", svc)
    assert err.value.causes[0].field == "spec.ports[0].nodePort"
