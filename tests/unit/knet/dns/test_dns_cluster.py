"""End to end without root: API objects in an in-memory control plane, the real Informer via
ServiceSource, the DNS server on loopback; what `dig` users see follows the API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import dns.asyncquery
import dns.message
import dns.rcode
import pytest

from control.api.local import LocalClient
from control.api.objects import ObjectService
from control.store.memory import MemoryStore
from knet.dns.records import ClusterRecords
from knet.dns.server import DnsServer
from knet.servicesource import ServiceSource


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[LocalClient, DnsServer]]:
    store = MemoryStore()
    objects = ObjectService(store)
    await objects.start()
    await objects.create("namespaces", {"metadata": {"name": "default"}})
    client = LocalClient(objects)
    records = ClusterRecords()
    source = ServiceSource(client, records)
    source.start()
    await source.wait_synced(5)
    server = DnsServer(records.snapshot, host="127.0.0.1", port=0)
    await server.start()
    yield client, server
    await server.stop()
    await source.stop()
    await client.close()
    await store.close()


async def resolve(server: DnsServer, name: str, qtype: str = "A") -> tuple[int, list[str]]:
    q = dns.message.make_query(name, qtype)
    r = await dns.asyncquery.udp(q, "127.0.0.1", port=server.port, timeout=2)
    return r.rcode(), sorted(x.to_text() for rr in r.answer for x in rr)


async def eventually(server: DnsServer, name: str, want: tuple[int, list[str]],
                     qtype: str = "A") -> None:
    got: Any = None
    for _ in range(100):
        got = await resolve(server, name, qtype)
        if got == want:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{name} {qtype}: {got}, wanted {want}")


async def test_services_and_slices_from_the_api(cluster: tuple[LocalClient, DnsServer]) -> None:
    client, server = cluster
    svc = await client.create("services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}})
    ip = svc["spec"]["clusterIP"]
    await eventually(server, "web.default.svc.cluster.local", (dns.rcode.NOERROR, [ip]))
    await client.create("services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": "default"},
        "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"port": 5432}]}})
    await client.create("endpointslices", {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "db-1", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4", "ports": [{"port": 5432, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.244.1.5"], "conditions": {"ready": True}},
                      {"addresses": ["10.244.2.6"], "conditions": {"ready": False}}]})
    await eventually(server, "db.default.svc.cluster.local", (dns.rcode.NOERROR, ["10.244.1.5"]))
    await client.delete("services", "web", namespace="default")
    await eventually(server, "web.default.svc.cluster.local", (dns.rcode.NXDOMAIN, []))
