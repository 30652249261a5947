"""pods/log and pods/exec handed to the node agent named by the Node's knet.io/agent-url:
streamed HTTP for logs, relayed WebSocket frames (with the subprotocol) for exec; to a
kubelet that speaks HTTPS and checks knet.kubelet.auth, with the API server's kubelet
client certificate."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from control.api.app import Settings, create_app
from control.api.ca import ClusterCA, Identity, server_context
from control.api.nodeproxy import KUBELET_TLS
from control.api.tls import ensure_client_certificates, kubelet_client_context
from control.store.memory import MemoryStore

AUTH = {"Authorization": "Bearer t"}
POD = "/api/v1/namespaces/default/pods/p"


def fake_agent(*middlewares: object) -> web.Application:
    async def log(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        for i in range(3):
            await resp.write(f"line {i} {request.query.get('container', '')}\n".encode())
        await resp.write_eof()
        return resp

    async def exec_(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("v5.channel.k8s.io",))
        await ws.prepare(request)
        async for msg in ws:
            await ws.send_bytes(b"\x01" + msg.data[1:].upper())      # stdin -> stdout
            break
        await ws.send_bytes(b'\x03{"status":"Success"}')
        await ws.close()
        return ws

    async def exec_post(request: web.Request) -> web.Response:
        return web.Response(text=f"{request.method} {request.query.get('command')}")

    app = web.Application(middlewares=middlewares)  # type: ignore[arg-type]
    app.router.add_post(POD + "/exec", exec_post)
    app.router.add_get(POD + "/log", log)
    app.router.add_get(POD + "/exec", exec_)
    return app


@pytest.fixture(params=["http", "https"])
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TestClient]:
    """The API server in front of a plain agent, or of a kubelet-like HTTPS agent that
    authenticates and authorizes like knet's kubelet."""
    from knet.kubelet.auth import KubeletAuth, middleware

    tls = None
    agent_server = TestServer(fake_agent(), host="127.0.0.1")
    if request.param == "https":
        ensure_client_certificates(tmp_path)
        ca = ClusterCA.load(tmp_path)
        crt, key = ca.ensure_pair("kubelet", Identity("system:node:node-1"), server=True,
                                  ips=["127.0.0.1"])
        tls = server_context(crt, key, client_ca=ca.cert_path)
        agent_server = TestServer(fake_agent(middleware(KubeletAuth())), host="127.0.0.1")
    await agent_server.start_server(ssl=tls)
    async with agent_server as agent:
        app = create_app(MemoryStore(), Settings(token="t"))
        if tls is not None:
            app[KUBELET_TLS] = kubelet_client_context(tmp_path)
        async with TestClient(TestServer(app), headers=AUTH) as client:
            await client.post("/api/v1/namespaces", json={"metadata": {"name": "default"}})
            await client.post("/api/v1/nodes", json={"metadata": {
                "name": "node-1",
                "annotations": {"knet.io/agent-url": str(agent.make_url("/"))}}})
            await client.post("/api/v1/namespaces/default/pods", json={
                "metadata": {"name": "p"},
                "spec": {"nodeName": "node-1",
                         "containers": [{"name": "c", "image": "knet/whoami"}]}})
            yield client


async def test_logs_are_proxied(api: TestClient) -> None:
    r = await api.get(POD + "/log", params={"container": "c", "follow": "true"})
    assert r.status == 200 and r.content_type == "text/plain"
    assert await r.text() == "line 0 c\nline 1 c\nline 2 c\n"


async def test_exec_websocket_is_relayed(api: TestClient) -> None:
    ws = await api.ws_connect(POD + "/exec", params={"command": "sh", "stdin": "true"},
                              protocols=("v5.channel.k8s.io",))
    assert ws.protocol == "v5.channel.k8s.io"
    await ws.send_bytes(b"\x00hello")
    out = await ws.receive(timeout=2)
    assert out.type == aiohttp.WSMsgType.BINARY and out.data == b"\x01HELLO"
    status = await ws.receive(timeout=2)
    assert status.data.startswith(b"\x03")
    await ws.close()


async def test_unbound_pod_and_missing_agent(api: TestClient) -> None:
    await api.post("/api/v1/namespaces/default/pods", json={
        "metadata": {"name": "q"}, "spec": {"containers": [{"name": "c", "image": "x"}]}})
    r = await api.get("/api/v1/namespaces/default/pods/q/log")
    assert r.status == 400 and "not scheduled" in (await r.json())["message"]
    await api.patch("/api/v1/nodes/node-1", json={"metadata": {"annotations": None}},
                    headers={"Content-Type": "application/merge-patch+json"})
    r = await api.get(POD + "/log")
    body = await r.json()
    assert r.status == 503 and "node-1" in body["message"]


async def test_exec_post_is_forwarded_with_its_method(api: TestClient) -> None:
    r = await api.post(POD + "/exec", params={"command": "date"})
    assert r.status == 200 and await r.text() == "POST date"


async def test_a_kubelet_refuses_an_api_server_without_its_client_certificate(
        tmp_path: Path) -> None:
    """The same kubelet, reached by an API server that trusts the CA but presents nothing:
    the kubelet's 401 comes back (a pass-through of the status)."""
    from control.api.ca import client_context
    from knet.kubelet.auth import KubeletAuth, middleware

    ensure_client_certificates(tmp_path)
    ca = ClusterCA.load(tmp_path)
    crt, key = ca.ensure_pair("kubelet", Identity("system:node:node-1"), server=True,
                              ips=["127.0.0.1"])
    agent_server = TestServer(fake_agent(middleware(KubeletAuth())), host="127.0.0.1")
    await agent_server.start_server(ssl=server_context(crt, key, client_ca=ca.cert_path))
    async with agent_server as agent:
        app = create_app(MemoryStore(), Settings(token="t"))
        app[KUBELET_TLS] = client_context(ca.cert_path)
        async with TestClient(TestServer(app), headers=AUTH) as api:
            await api.post("/api/v1/namespaces", json={"metadata": {"name": "default"}})
            await api.post("/api/v1/nodes", json={"metadata": {
                "name": "node-1", "annotations": {"knet.io/agent-url": str(agent.make_url("/"))}}})
            await api.post("/api/v1/namespaces/default/pods", json={
                "metadata": {"name": "p"}, "spec": {"nodeName": "node-1", "containers": [
                    {"name": "c", "image": "knet/whoami"}]}})
            r = await api.get(POD + "/log")
            assert r.status == 401 and await r.text() == "Unauthorized"
