"""The etcd store passes the Store contract against a real etcd v3 (Debian's etcd-server),
started here on loopback with free ports and a temporary data dir, and stopped by its pid."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "control" / "store"))
from store_contract import StoreContract, take

from control.errors import Internal
from control.store import open_store
from control.store.etcd import EtcdStore, wait_ready

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EtcdServer:
    """One single-member etcd on loopback, owned by the test that starts it."""

    def __init__(self, data_dir: Path) -> None:
        self.client = f"127.0.0.1:{_free_port()}"
        peer = f"http://127.0.0.1:{_free_port()}"
        self.log = data_dir / "etcd.log"
        self.args = [ETCD, "--name", "knet-test", "--data-dir", str(data_dir / "data"),
                     "--listen-client-urls", f"http://{self.client}",
                     "--advertise-client-urls", f"http://{self.client}",
                     "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                     "--initial-cluster", f"knet-test={peer}"]
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    if not Path(ETCD).exists():
        pytest.fail("etcd is not installed: apt-get install etcd-server (scripts/install.sh)")
    server = EtcdServer(tmp_path_factory.mktemp("etcd"))
    try:
        asyncio.run(wait_ready([server.client], timeout=20))
    except TimeoutError:
        server.stop()
        pytest.fail(f"etcd did not start: {server.log.read_text()[-2000:]}")
    yield server
    server.stop()


@pytest.fixture
async def store(etcd: EtcdServer) -> AsyncIterator[EtcdStore]:
    s = EtcdStore([etcd.client], prefix=f"/t{uuid.uuid4().hex}")
    yield s
    await s.close()


class TestEtcdStore(StoreContract):
    pass


async def test_open_store_etcd_url_with_failover_and_prefix(etcd: EtcdServer) -> None:
    dead = f"127.0.0.1:{_free_port()}"
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
    dead = f"127.0.0.1:{_free_port()}"
    s = EtcdStore([dead], timeout=2)
    try:
        with pytest.raises(Internal, match=f"etcd unreachable.*{dead}"):
            await s.get("/a")
    finally:
        await s.close()


async def test_watch_resumes_after_etcd_restarts(tmp_path: Path) -> None:
    server = EtcdServer(tmp_path)
    try:
        await wait_ready([server.client], timeout=20)
        s = EtcdStore([server.client], timeout=20)
        rev0 = await s.current_revision()
        async with s.watch("/w/", from_revision=rev0) as w:
            await s.create("/w/a", b"1")
            assert [e.kv.key for e in await take(w, 1)] == ["/w/a"]
            server.stop()
            server.start()
            await wait_ready([server.client], timeout=20)
            await s.create("/w/b", b"2")
            events = await asyncio.wait_for(take(w, 1), 20)
            assert [(e.kv.key, e.kv.value) for e in events] == [("/w/b", b"2")]
        await s.close()
    finally:
        server.stop()
