"""The informer adapter: informer events reach the record table, with a fake informer that
behaves like control.informer.Informer (sync start, async stop/wait_synced, replay)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from dns.rdatatype import RdataType as T

from knet.dns.records import ClusterRecords
from knet.dns.source import ClusterSource


class FakeInformer:
    def __init__(self, client: Any, resource: str, **kw: Any) -> None:
        self.client, self.resource, self.kw = client, resource, kw
        self.handlers: list[Any] = []
        self.started = self.stopped = False
        self.synced = asyncio.Event()

    def add_handler(self, h: Any) -> None:
        self.handlers.append(h)

    def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def wait_synced(self, timeout: float = 30.0) -> None:
        try:
            await asyncio.wait_for(self.synced.wait(), timeout)
        except TimeoutError:
            raise TimeoutError(f"informer {self.resource}: not synced") from None

    def emit(self, method: str, *args: Any) -> None:
        for h in self.handlers:
            getattr(h, method)(*args)
        if method == "on_synced":
            self.synced.set()


def _svc(ip: str) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "default"}, "spec": {"clusterIP": ip}}


async def test_events_reach_the_record_table() -> None:
    made: dict[str, FakeInformer] = {}

    def factory(client: Any, resource: str, **kw: Any) -> FakeInformer:
        made[resource] = FakeInformer(client, resource, **kw)
        return made[resource]

    records = ClusterRecords()
    source = ClusterSource("client", records, informer=factory)
    assert sorted(made) == ["endpointslices", "services"]
    source.start()
    assert made["services"].started and made["endpointslices"].started
    svcs, slices = made["services"], made["endpointslices"]
    svcs.emit("on_add", _svc("10.96.0.20"))
    svcs.emit("on_synced")
    with pytest.raises(TimeoutError):
        await source.wait_synced(0.05)   # endpointslices not synced yet
    slices.emit("on_synced")
    await source.wait_synced(1)
    assert records.synced
    snap = records.snapshot()
    assert snap.lookup("web.default.svc.cluster.local", T.A).answer[0].data == "10.96.0.20"
    svcs.emit("on_update", _svc("10.96.0.20"), _svc("10.96.0.30"))
    assert records.snapshot().lookup("web.default.svc.cluster.local", T.A).answer[0].data == \
        "10.96.0.30"
    slices.emit("on_add", {"metadata": {"name": "s", "namespace": "default",
                                        "labels": {"kubernetes.io/service-name": "web"}},
                           "endpoints": []})
    svcs.emit("on_delete", _svc("10.96.0.30"))
    assert records.snapshot().lookup("web.default.svc.cluster.local", T.A).answer == ()
    await source.stop()
    assert svcs.stopped and slices.stopped


def test_real_informer_is_the_default() -> None:
    from control.informer import Informer

    source = ClusterSource(object(), ClusterRecords())
    assert isinstance(source.services, Informer) and source.services.resource == "services"
