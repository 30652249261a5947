"""Helpers for the proxy's unit tests: wire-form Services/EndpointSlices, real backends on
127.x addresses (the whole 127/8 is local, no root needed), and a Proxier fed like an
informer would feed it."""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Any

from knet.proxy.flows import FlowRecord, FlowRing
from knet.proxy.proxier import Proxier


def loopback_net() -> str:
    """A random 127.a.b. prefix so parallel test runs do not collide."""
    return f"127.{random.randint(20, 250)}.{random.randint(1, 250)}."


def free_port(ip: str, kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


def service(name: str, ip: str, ports: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"clusterIP": ip, "ports": ports, **spec}}


def endpoint_slice(svc: str, ports: list[dict[str, Any]],
                   endpoints: list[tuple[str, str]]) -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": f"{svc}-x1", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": svc}},
            "ports": ports,
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True},
                           "targetRef": {"kind": "Pod", "namespace": "default", "name": pod}}
                          for ip, pod in endpoints]}


async def start_proxier(objs: list[dict[str, Any]], **kw: Any) -> Proxier:
    kw.setdefault("flow_ring", FlowRing())
    p = Proxier("node-1", **kw)
    for o in objs:
        if o["kind"] == "Service":
            p.on_service_add(o)
        else:
            p.on_endpointslice_add(o)
    p.on_service_synced()
    p.on_endpointslice_synced()
    await p.wait_applied()
    return p


async def wait_flows(ring: FlowRing, n: int, timeout: float = 3.0) -> list[FlowRecord]:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while len(ring) < n and loop.time() < end:
        await asyncio.sleep(0.01)
    return ring.records()


class TcpBackend:
    """Answers each chunk with `name|chunk`; with mode="sum", reads to EOF then sends
    the byte count and closes; "mirror" sends back exactly what it reads; "silent" accepts
    and never answers."""

    def __init__(self, name: str, ip: str, *, mode: str = "echo") -> None:
        self.name, self.ip, self.mode = name, ip, mode
        self.port = 0
        self.connections = 0
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> TcpBackend:
        self.server = await asyncio.start_server(self._handle, self.ip, 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            if self.mode == "sum":
                data = await r.read()
                w.write(f"{self.name}|{len(data)}".encode())
                await w.drain()
            elif self.mode == "mirror":
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            elif self.mode == "silent":
                await r.read()
                await asyncio.sleep(3600)
            else:
                while data := await r.read(65536):
                    w.write(self.name.encode() + b"|" + data)
                    await w.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            w.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


async def tcp_ask(ip: str, port: int, data: bytes = b"hi", timeout: float = 2.0) -> bytes:
    r, w = await asyncio.wait_for(asyncio.open_connection(ip, port), timeout)
    try:
        w.write(data)
        await w.drain()
        return await asyncio.wait_for(r.read(65536), timeout)
    finally:
        w.close()


class UdpBackend(asyncio.DatagramProtocol):
    """Answers each datagram with `name|datagram`."""

    def __init__(self, name: str, ip: str) -> None:
        self.name, self.ip = name, ip
        self.port = 0
        self.transport: asyncio.DatagramTransport | None = None
        self.seen = 0

    async def start(self) -> UdpBackend:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(lambda: self,
                                                                local_addr=(self.ip, 0))
        self.port = self.transport.get_extra_info("sockname")[1]
        return self

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.seen += 1
        assert self.transport is not None
        self.transport.sendto(self.name.encode() + b"|" + data[:1000], addr)

    def stop(self) -> None:
        if self.transport is not None:
            self.transport.close()


class UdpClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def open(cls, ip: str) -> UdpClient:
        c = cls()
        loop = asyncio.get_running_loop()
        c.transport, _ = await loop.create_datagram_endpoint(lambda: c, local_addr=(ip, 0))
        return c

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.got.put_nowait((data, addr))

    async def ask(self, data: bytes, to: tuple[str, int],
                  timeout: float = 2.0) -> tuple[bytes, tuple[str, int]]:
        assert self.transport is not None
        self.transport.sendto(data, to)
        return await asyncio.wait_for(self.got.get(), timeout)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
