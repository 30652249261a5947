"""services/NAME[:PORT]/proxy, pods/NAME[:PORT]/proxy and nodes/NAME/proxy: the path, query,
method and body reach the backend (an endpoint of the Service, the pod's IP:PORT, the node's
kubelet), the answer comes back with its status and headers; sockets come from the app's
PodNetwork for the pod's node; kube's errors for a missing endpoint or a refused port."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from control.api.app import Settings, create_app
from control.api.proxysub import POD_NETWORK, split_name
from control.errors import BadRequest
from control.store.memory import MemoryStore

AUTH = {"Authorization": "Bearer t"}
NS = "/api/v1/namespaces/default"


class RecordingNetwork:
    def __init__(self) -> None:
        self.nodes: list[str] = []

    def socket(self, node: str, family: int, type_: int, proto: int) -> socket.socket:
        self.nodes.append(node)
        return socket.socket(family, type_, proto)


def backend(tag: str) -> web.Application:
    async def any_(request: web.Request) -> web.Response:
        body = await request.text()
        return web.Response(text=f"{tag} {request.method} {request.path_qs} {body}",
                            status=201 if request.method == "POST" else 200,
                            headers={"X-Backend": tag})
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", any_)
    return app


@pytest.fixture
async def api() -> AsyncIterator[tuple[TestClient, RecordingNetwork, int]]:
    pod_srv = TestServer(backend("pod"), host="127.0.0.1")
    await pod_srv.start_server()
    node_srv = TestServer(backend("kubelet"), host="127.0.0.1")
    await node_srv.start_server()
    port = int(pod_srv.port or 0)
    network = RecordingNetwork()
    app = create_app(MemoryStore(), Settings(token="t"))
    app[POD_NETWORK] = network
    async with pod_srv, node_srv, TestClient(TestServer(app), headers=AUTH) as c:
        await c.post("/api/v1/namespaces", json={"metadata": {"name": "default"}})
        await c.post("/api/v1/nodes", json={"metadata": {
            "name": "node-1", "annotations": {"knet.io/agent-url": str(node_srv.make_url(""))}}})
        r = await c.post(f"{NS}/pods", json={
            "metadata": {"name": "p"},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "x"}]}})
        assert r.status == 201, await r.text()
        await c.patch(f"{NS}/pods/p/status", json={"status": {"podIP": "127.0.0.1"}},
                      headers={"Content-Type": "application/merge-patch+json"})
        await c.post(f"{NS}/services", json={
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 8080, "targetPort": port}]}})
        await c.post("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", json={
            "metadata": {"name": "web-x", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": port}],
            "endpoints": [{"addresses": ["127.0.0.1"], "nodeName": "node-2",
                           "conditions": {"ready": True}}]})
        yield c, network, port


async def test_service_proxy_by_port_name_and_number(api: Any) -> None:
    c, network, _ = api
    for name in ("web:http", "web:8080", "http:web:http"):
        r = await c.get(f"{NS}/services/{name}/proxy/a/b?x=1")
        assert r.status == 200 and await r.text() == "pod GET /a/b?x=1 ", name
        assert r.headers["X-Backend"] == "pod"
    assert network.nodes[-1] == "node-2"
    r = await c.post(f"{NS}/services/web:http/proxy/", data="hi")
    assert r.status == 201 and await r.text() == "pod POST / hi"
    r = await c.get(f"{NS}/services/web/proxy/")         # "" matches no named port
    assert r.status == 503
    assert (await r.json())["message"] == 'no endpoints available for service "web"'
    r = await c.get(f"{NS}/services/nope/proxy/")
    assert r.status == 404


async def test_pod_proxy(api: Any) -> None:
    c, network, port = api
    r = await c.get(f"{NS}/pods/p:{port}/proxy/health")
    assert r.status == 200 and await r.text() == "pod GET /health "
    assert network.nodes == ["node-1"]
    r = await c.get(f"{NS}/pods/p:{port}/proxy")
    assert await r.text() == "pod GET / "
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    r = await c.get(f"{NS}/pods/p:{closed}/proxy/")
    body = await r.json()
    assert r.status == 503 and body["message"].startswith("error trying to reach pod p:")
    r = await c.get(f"{NS}/pods/p:http/proxy/")
    assert r.status == 400


async def test_node_proxy_goes_to_the_kubelet(api: Any) -> None:
    c, _, _ = api
    r = await c.get("/api/v1/nodes/node-1/proxy/flows?limit=3")
    assert r.status == 200 and await r.text() == "kubelet GET /flows?limit=3 "
    r = await c.get("/api/v1/nodes/node-9/proxy/flows")
    assert r.status == 404


def test_split_name() -> None:
    assert split_name("web", "service") == ("http", "web", "")
    assert split_name("web:80", "service") == ("http", "web", "80")
    assert split_name("https:web:443", "service") == ("https", "web", "443")
    with pytest.raises(BadRequest):
        split_name("ftp:web:21", "service")
