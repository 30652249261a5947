"""The shared Services/EndpointSlices adapter (`knet.servicesource.ServiceSource`) on the real
`control.informer.Informer` over an in-memory control plane: events reach both consumers (the
DNS record table, the proxy's config table); a caller's Services informer is reused, never
started or stopped by the source; wait_synced names what is not synced."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from dns.rdatatype import RdataType as T

from control.api.local import LocalClient
from control.api.objects import ObjectService
from control.clientbase import Client, Obj
from control.informer import Informer
from control.store.memory import MemoryStore
from knet.dns.records import ClusterRecords
from knet.proxy.config import ConfigTracker, ServiceTable
from knet.servicesource import InformerLike, ServiceSource

WEB = "web.default.svc.cluster.local"


@pytest.fixture
async def client() -> AsyncIterator[LocalClient]:
    store = MemoryStore()
    objects = ObjectService(store)
    await objects.start()
    await objects.create("namespaces", {"metadata": {"name": "default"}})
    c = LocalClient(objects)
    yield c
    await c.close()
    await store.close()


def service(name: str, ip: str | None = None) -> Obj:
    spec: Obj = {"selector": {"app": name}, "ports": [{"name": "http", "port": 80}]}
    if ip:
        spec["clusterIP"] = ip
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def endpoint_slice(svc: str, ip: str) -> Obj:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{svc}-1", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}]}


class Recorder:
    """Both handler seams; records each call as (method, object name or None)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    def _rec(self, method: str, obj: Obj | None = None) -> None:
        self.calls.append((method, obj["metadata"]["name"] if obj else None))

    def on_service_add(self, service: Obj) -> None:
        self._rec("service_add", service)

    def on_service_update(self, old: Obj, new: Obj) -> None:
        self._rec("service_update", new)

    def on_service_delete(self, service: Obj) -> None:
        self._rec("service_delete", service)

    def on_service_synced(self) -> None:
        self._rec("service_synced")

    def on_endpointslice_add(self, slice_: Obj) -> None:
        self._rec("endpointslice_add", slice_)

    def on_endpointslice_update(self, old: Obj, new: Obj) -> None:
        self._rec("endpointslice_update", new)

    def on_endpointslice_delete(self, slice_: Obj) -> None:
        self._rec("endpointslice_delete", slice_)

    def on_endpointslice_synced(self) -> None:
        self._rec("endpointslice_synced")


class StopRecordingInformer(Informer):
    """The real informer, remembering that it was stopped (and optionally failing to)."""

    def __init__(self, client: Client, resource: str, *, fail_stop: bool = False) -> None:
        super().__init__(client, resource)
        self.stopped, self.fail_stop = False, fail_stop

    async def stop(self) -> None:
        await super().stop()
        self.stopped = True
        if self.fail_stop:
            raise RuntimeError(f"{self.resource}: stop failed")


def recording_factory(*, fail_stop: bool = False) -> tuple[
        Callable[[Client, str], InformerLike], dict[str, StopRecordingInformer]]:
    made: dict[str, StopRecordingInformer] = {}

    def make(client: Client, resource: str) -> StopRecordingInformer:
        made[resource] = StopRecordingInformer(client, resource, fail_stop=fail_stop)
        return made[resource]

    return make, made


async def until(cond: Callable[[], bool], what: str) -> None:
    for _ in range(200):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_each_event_reaches_the_matching_handler_method(client: LocalClient) -> None:
    await client.create("services", service("web"))
    rec = Recorder()
    make, made = recording_factory()
    source = ServiceSource(client, rec, informer=make)
    assert sorted(made) == ["endpointslices", "services"]
    source.start()
    await source.wait_synced(5)
    assert ("service_add", "web") in rec.calls and ("service_synced", None) in rec.calls
    assert ("endpointslice_synced", None) in rec.calls
    await client.create("endpointslices", endpoint_slice("web", "10.244.1.2"))
    await client.patch("services", "web", {"metadata": {"labels": {"v": "2"}}},
                       namespace="default")
    await client.delete("endpointslices", "web-1", namespace="default")
    await client.delete("services", "web", namespace="default")
    tail = [("endpointslice_add", "web-1"), ("service_update", "web"),
            ("endpointslice_delete", "web-1"), ("service_delete", "web")]
    await until(lambda: all(c in rec.calls for c in tail), f"{tail} in {rec.calls}")
    await source.stop()
    assert made["services"].stopped and made["endpointslices"].stopped


async def test_dns_records_follow_the_api(client: LocalClient) -> None:
    await client.create("services", service("web", "10.96.0.20"))
    records = ClusterRecords()
    source = ServiceSource(client, records)
    assert isinstance(source.services, Informer)   # the real informer is the default
    source.start()
    await source.wait_synced(5)
    assert records.synced
    assert records.snapshot().lookup(WEB, T.A).answer[0].data == "10.96.0.20"
    await client.delete("services", "web", namespace="default")
    await until(lambda: records.snapshot().lookup(WEB, T.A).answer == (), "web deleted")
    await source.stop()


async def test_proxy_table_follows_the_api(client: LocalClient) -> None:
    tables: list[ServiceTable] = []

    async def apply(t: ServiceTable) -> None:
        tables.append(t)

    tracker = ConfigTracker(apply=apply)
    await client.create("services", service("web", "10.96.0.21"))
    await client.create("endpointslices", endpoint_slice("web", "10.244.1.2"))
    source = ServiceSource(client, tracker)
    source.start()
    await source.wait_synced(5)
    await tracker.wait_applied()
    port = tables[-1]["default/web:http"]
    assert port.cluster_ip == "10.96.0.21"
    assert [e.addr for e in port.endpoints] == ["10.244.1.2:8080"]
    await client.delete("endpointslices", "web-1", namespace="default")
    await until(lambda: tables[-1]["default/web:http"].endpoints == (), "endpoints removed")
    await source.stop()
    tracker.cancel()


async def test_shared_services_informer_is_reused_not_started_or_stopped(
        client: LocalClient) -> None:
    shared = StopRecordingInformer(client, "services")
    rec = Recorder()
    make, made = recording_factory()
    source = ServiceSource(client, rec, informer=make, services=shared)
    assert sorted(made) == ["endpointslices"]   # no second Services informer
    source.start()
    with pytest.raises(TimeoutError, match="services"):
        await source.wait_synced(0.2)          # the caller has not started its informer
    await made["endpointslices"].wait_synced(5)
    shared.start()
    await source.wait_synced(5)
    await source.stop()
    assert made["endpointslices"].stopped and not shared.stopped
    await client.create("services", service("late"))
    await until(lambda: ("service_add", "late") in rec.calls, "late service seen")
    await shared.stop()


async def test_stop_stops_every_owned_informer_even_if_one_fails(
        client: LocalClient, caplog: pytest.LogCaptureFixture) -> None:
    make, made = recording_factory(fail_stop=True)
    source = ServiceSource(client, Recorder(), informer=make)
    source.start()
    await source.wait_synced(5)
    await source.stop()   # logged, not raised
    assert made["services"].stopped and made["endpointslices"].stopped
    assert "endpointslices: stop failed" in caplog.text and "services: stop failed" in caplog.text

