"""The node proxy's mesh source on the real informers over an in-memory control plane:
mesh objects are admitted by the API (422 for an invalid one), and a change reaches the
route table the listeners read within a second, swapped whole."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from meshkit import backend_of, httproute, service, services, virtualservice

from control.api.crdinstall import serve_installed_crds
from control.api.local import LocalClient
from control.api.objects import ObjectService
from control.errors import Invalid
from control.store.memory import MemoryStore
from knet.mesh.source import MeshSource, MeshState
from knet.mesh.types import RouteTable
from knet.proxy.config import ServiceTable

NS = "shop"
KEY = f"{NS}/cart:p80"


@pytest.fixture
async def client() -> AsyncIterator[LocalClient]:
    store = MemoryStore()
    objects = ObjectService(store)
    await objects.start()
    crds = await serve_installed_crds(objects)   # the mesh kinds, as in every knet cluster
    for ns in ("default", NS):
        await objects.create("namespaces", {"metadata": {"name": ns}})
    c = LocalClient(objects)
    yield c
    await c.close()
    await crds.stop()
    await store.close()


class Owner:
    def __init__(self, table: ServiceTable) -> None:
        self.table = table


async def changed(state: MeshState, old: RouteTable, timeout: float = 1.0) -> float:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    while state.table is old:
        assert loop.time() - t0 < timeout, "the route table did not change within a second"
        await asyncio.sleep(0.01)
    return loop.time() - t0


async def test_changes_reach_the_table_within_a_second(client: LocalClient) -> None:
    owner = Owner(services(service("cart", ns=NS), service("cart-v2", ns=NS, ip="10.96.0.44")))
    state = MeshState()
    source = MeshSource(client, owner, state)
    source.start()
    try:
        await source.wait_synced(5)
        await changed(state, RouteTable({}, {}))
        assert backend_of(state.table, KEY) == f"{NS}/cart:80"
        vs: dict[str, Any] = virtualservice("cart", ["cart"], [
            {"route": [{"destination": {"host": "cart-v2"}}]}], ns=NS)
        before = state.table
        created = await client.create("virtualservices", vs, namespace=NS)
        await changed(state, before)
        assert backend_of(state.table, KEY) == f"{NS}/cart-v2:80"
        before = state.table
        await client.delete("virtualservices", "cart", namespace=NS)
        await changed(state, before)
        assert backend_of(state.table, KEY) == f"{NS}/cart:80"
        assert created["kind"] == "VirtualService"
        # a new Service table from the proxier is picked up too
        before = state.table
        owner.table = services(service("cart", ns=NS, ports=(80,)))
        await changed(state, before)
        assert sorted(state.table.ports) == [KEY]
    finally:
        await source.stop()


async def test_the_api_refuses_an_invalid_route(client: LocalClient) -> None:
    vs = virtualservice("cart", ["cart"], [{"route": [{"destination": {"host": "cart"},
                                                       "weight": -5}]}], ns=NS)
    with pytest.raises(Invalid) as exc:
        await client.create("virtualservices", vs, namespace=NS)
    assert [c.field for c in exc.value.causes] == ["spec.http[0].route[0].weight"]


async def test_route_status_is_written_back_once(client: LocalClient) -> None:
    owner = Owner(services(service("cart", ns=NS)))
    state = MeshState()
    source = MeshSource(client, owner, state)
    source.start()
    try:
        await source.wait_synced(5)
        await client.create("httproutes", httproute("split", [{"backendRefs": [
            {"name": "cart", "port": 80}, {"name": "gone", "port": 80}]}], parent="cart",
            ns=NS), namespace=NS)

        async def parents() -> list[dict[str, Any]]:
            for _ in range(100):
                obj = await client.get("httproutes", "split", namespace=NS)
                if (obj.get("status") or {}).get("parents"):
                    return list(obj["status"]["parents"])
                await asyncio.sleep(0.02)
            raise AssertionError("no status written within 2 s")

        (parent,) = await parents()
        conds = {c["type"]: c for c in parent["conditions"]}
        assert parent["parentRef"]["name"] == "cart" and parent["controllerName"]
        assert (conds["Accepted"]["status"], conds["ResolvedRefs"]["reason"]) == (
            "True", "BackendNotFound")
        assert conds["ResolvedRefs"]["lastTransitionTime"]
        rv = (await client.get("httproutes", "split", namespace=NS))["metadata"][
            "resourceVersion"]
        await asyncio.sleep(0.6)  # rebuilt since (its own write was an event): no rewrite
        assert (await client.get("httproutes", "split", namespace=NS))["metadata"][
            "resourceVersion"] == rv
    finally:
        await source.stop()


async def test_a_request_never_sees_older_endpoints_than_the_proxier(
        client: LocalClient) -> None:
    owner = Owner(services(service("cart", ns=NS, pods=1)))
    state = MeshState()
    source = MeshSource(client, owner, state, period=3600)  # the loop will not run again
    source.rebuild()
    (route,) = state.current().ports[KEY].routes
    assert len(route.backends[0].endpoints) == 1
    owner.table = services(service("cart", ns=NS, pods=3))  # the proxier applied a change
    (route,) = state.current().ports[KEY].routes
    assert len(route.backends[0].endpoints) == 3
