"""The etcd store passes the Store contract against a real etcd v3 (Debian's etcd-server),
started here on loopback with free ports and a temporary data dir, and stopped by its pid."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "control" / "store"))
from store_contract import StoreContract, take

from control.errors import Internal
from control.store import open_store
from control.store.etcd import EtcdStore
from control.store.etcd_server import LocalEtcd, etcd_binary, free_port


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def etcd(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalEtcd]:
    if etcd_binary() is None:
        pytest.fail("etcd is not installed: apt-get install etcd-server (scripts/install.sh)")
    server = await LocalEtcd.start(tmp_path_factory.mktemp("etcd"))
    yield server
    await server.stop()


@pytest.fixture
async def store(etcd: LocalEtcd) -> AsyncIterator[EtcdStore]:
    s = EtcdStore([etcd.client], prefix=f"/t{uuid.uuid4().hex}")
    yield s
    await s.close()


class TestEtcdStore(StoreContract):
    pass


async def test_open_store_etcd_url_with_failover_and_prefix(etcd: LocalEtcd) -> None:
    dead = f"127.0.0.1:{free_port()}"
    prefix = f"/u{uuid.uuid4().hex}"
    s = open_store(f"etcd://{dead},{etcd.client}{prefix}")
    assert isinstance(s, EtcdStore) and s.prefix == prefix
    try:
        kv = await s.create("/registry/pods/a", b"v")
        plain = EtcdStore([etcd.client])
        try:
            raw = await plain.get(prefix + "/registry/pods/a")
            assert raw is not None and raw.value == b"v" and raw.mod_revision == kv.mod_revision
        finally:
            await plain.close()
        async with s.watch("/registry/", from_revision=kv.mod_revision - 1) as w:
            assert [e.kv.key for e in await take(w, 1)] == ["/registry/pods/a"]
    finally:
        await s.close()


async def test_unreachable_etcd_is_an_error_naming_the_endpoint() -> None:
    dead = f"127.0.0.1:{free_port()}"
    s = EtcdStore([dead], timeout=2)
    try:
        with pytest.raises(Internal, match=f"etcd unreachable.*{dead}"):
            await s.get("/a")
    finally:
        await s.close()


async def test_watch_resumes_after_etcd_restarts(tmp_path: Path) -> None:
    server = await LocalEtcd.start(tmp_path)
    s = EtcdStore([server.client], timeout=20)
    try:
        rev0 = await s.current_revision()
        async with s.watch("/w/", from_revision=rev0) as w:
            await s.create("/w/a", b"1")
            assert [e.kv.key for e in await take(w, 1)] == ["/w/a"]
            await server.restart()
            await s.create("/w/b", b"2")
            events = await asyncio.wait_for(take(w, 1), 20)
            assert [(e.kv.key, e.kv.value) for e in events] == [("/w/b", b"2")]
    finally:
        await s.close()
        await server.stop()


async def test_a_slow_watcher_rereads_history_and_misses_nothing(etcd: LocalEtcd) -> None:
    s = EtcdStore([etcd.client], prefix=f"/t{uuid.uuid4().hex}", max_backlog=5)
    try:
        rev0 = await s.current_revision()
        async with s.watch("/b/", from_revision=rev0) as w:
            await s.create("/b/first", b"v")
            assert [e.kv.key for e in await take(w, 1)] == ["/b/first"]
            for i in range(20):
                await s.create(f"/b/{i:02d}", b"v")
            await asyncio.sleep(0.5)  # let the pump overrun its backlog
            assert [e.kv.key for e in await take(w, 20)] == [f"/b/{i:02d}" for i in range(20)]
            await s.create("/b/live", b"v")
            assert [e.kv.key for e in await take(w, 1)] == ["/b/live"]
    finally:
        await s.close()
