"""The node proxy on the real control plane pieces: the object layer on a memory store, the
in-process client and the real Informer (no fakes between the API and the proxy). The
Service is a NodePort on a 127.x node IP, so every packet stays on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from proxy_testkit import TcpBackend, loopback_net, wait_flows

from control.api.local import LocalClient
from control.api.objects import ObjectService
from control.store.memory import MemoryStore
from knet.proxy.agent import start_node_proxy


@pytest.fixture
async def client() -> AsyncIterator[LocalClient]:
    objects = ObjectService(MemoryStore())
    await objects.start()
    for name in ("default", "kube-system"):
        await objects.create("namespaces", {"metadata": {"name": name}})
    yield LocalClient(objects)


async def ask(ip: str, port: int) -> bytes:
    r, w = await asyncio.wait_for(asyncio.open_connection(ip, port), 2)
    w.write(b"hi")
    try:
        return await asyncio.wait_for(r.read(100), 2)
    finally:
        w.close()


async def wait_for_answer(ip: str, port: int, want: bytes, timeout: float = 3.0) -> list[bytes]:
    """Answers until `want` comes (the proxy applies changes within ~100 ms)."""
    loop = asyncio.get_running_loop()
    end, seen = loop.time() + timeout, []
    while loop.time() < end:
        try:
            seen.append(await ask(ip, port))
            if seen[-1].startswith(want):
                return seen
        except OSError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"{ip}:{port} never answered {want!r}; saw {seen[-3:]}")


async def test_services_and_slices_from_the_api_are_served(client: LocalClient) -> None:
    net = loopback_net()
    node_ip = f"{net}100"
    b1 = await TcpBackend("web-1", f"{net}11").start()
    b2 = await TcpBackend("web-2", f"{net}12").start()
    svc = await client.create("services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"type": "NodePort", "selector": {"app": "web"},
                 "ports": [{"name": "p", "port": 80, "targetPort": "p"}]}}, namespace="default")
    node_port = svc["spec"]["ports"][0]["nodePort"]
    proxy = await start_node_proxy(client=client, node_name="node-1", netns=None,
                                   node_ips=[node_ip], resolve_pods=False)
    try:
        slice_ = await client.create("endpointslices", {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "ports": [{"name": "p", "port": b1.port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [b1.ip], "conditions": {"ready": True},
                           "targetRef": {"kind": "Pod", "namespace": "default",
                                         "name": "web-1"}}]}, namespace="default")
        await wait_for_answer(node_ip, node_port, b"web-1|")
        # the endpoint moves: web-2 on another port, same slice
        slice_["ports"][0]["port"] = b2.port
        slice_["endpoints"][0]["addresses"] = [b2.ip]
        slice_["endpoints"][0]["targetRef"]["name"] = "web-2"
        await client.update("endpointslices", slice_)
        await wait_for_answer(node_ip, node_port, b"web-2|")
        assert (await ask(node_ip, node_port)).startswith(b"web-2|")
        flows = await wait_flows(proxy.ring, 1)
        assert flows[-1].endpoint_pod == "default/web-2"
        await client.delete("services", "web", namespace="default")
        loop = asyncio.get_running_loop()
        end = loop.time() + 3
        while proxy.proxier.listeners and loop.time() < end:
            await asyncio.sleep(0.05)
        assert proxy.proxier.listeners == {}
    finally:
        await proxy.stop()
        await b1.stop()
        await b2.stop()
