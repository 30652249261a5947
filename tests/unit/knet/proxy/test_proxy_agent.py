"""The node proxy assembly (knet.proxy.agent), with a fake informer that calls the handlers
the way control.informer.Informer does (adds, then synced, then changes). The informer
adapter itself is tested in tests/unit/knet/test_servicesource.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from proxy_testkit import TcpBackend, endpoint_slice, loopback_net, service, tcp_ask, wait_flows

from knet.proxy.agent import DataplaneAddresses, start_node_proxy


class FakeInformer:
    made: dict[str, FakeInformer]

    def __init__(self, client: object, resource: str) -> None:
        self.client, self.resource = client, resource
        self.handlers: list[dict[str, Callable[..., Any]]] = []
        self.started = self.stopped = False
        self.objects: list[dict[str, Any]] = []

    def add_handler(self, handler: Any = None, **fns: Callable[..., Any] | None) -> None:
        self.handlers.append({k: v for k, v in fns.items() if v is not None})

    def start(self) -> None:
        self.started = True
        for obj in self.objects:
            self.emit("on_add", obj)
        self.emit("on_synced")

    async def stop(self) -> None:
        self.stopped = True

    async def wait_synced(self, timeout: float = 30.0) -> None:
        assert self.started

    def emit(self, method: str, *args: Any) -> None:
        for h in self.handlers:
            if method in h:
                h[method](*args)


def factory(seed: dict[str, list[dict[str, Any]]]) -> tuple[
        Callable[[object, str], FakeInformer], dict[str, FakeInformer]]:
    made: dict[str, FakeInformer] = {}

    def make(client: object, resource: str) -> FakeInformer:
        inf = FakeInformer(client, resource)
        inf.objects = list(seed.get(resource, []))
        made[resource] = inf
        return inf

    return make, made


class FakeDataplane:
    def __init__(self) -> None:
        self.ips: set[tuple[str, str]] = set()

    async def add_service_ip(self, node: str, ip: str) -> None:
        self.ips.add((node, ip))

    async def remove_service_ip(self, node: str, ip: str) -> None:
        self.ips.discard((node, ip))


async def test_node_proxy_serves_asks_for_cluster_ips_and_names_client_pods() -> None:
    net = loopback_net()
    b = await TcpBackend("web-1", f"{net}10").start()
    client_ip = f"{net}77"
    pod = {"metadata": {"name": "client-1", "namespace": "default"},
           "status": {"podIP": client_ip}}
    make, made = factory({
        "services": [service("web", f"{net}1", [{"port": 8080, "targetPort": b.port}])],
        "endpointslices": [endpoint_slice("web", [{"port": b.port, "protocol": "TCP"}],
                                          [(b.ip, "web-1")])],
        "pods": [pod]})
    dp = FakeDataplane()
    proxy = await start_node_proxy(client=object(), node_name="node-1", netns=None,  # type: ignore[arg-type]
                                   dataplane=dp, informer=make)
    try:
        await proxy.proxier.wait_applied()
        assert dp.ips == {("node-1", f"{net}1")}
        r, w = await asyncio.open_connection(f"{net}1", 8080, local_addr=(client_ip, 0))
        w.write(b"hi")
        assert await asyncio.wait_for(r.read(100), 2) == b"web-1|hi"
        w.close()
        (flow,) = await wait_flows(proxy.ring, 1)
        assert (flow.client_pod, flow.endpoint_pod) == ("default/client-1", "default/web-1")
        assert await tcp_ask(f"{net}1", 8080) == b"web-1|hi"
    finally:
        await proxy.stop()
        await b.stop()
    assert dp.ips == set()
    assert all(inf.stopped for inf in made.values())


def test_dataplane_addresses_names_the_node() -> None:
    dp = FakeDataplane()
    asyncio.run(DataplaneAddresses(dp, "node-2").add_service_ip("10.96.0.10"))
    assert dp.ips == {("node-2", "10.96.0.10")}
