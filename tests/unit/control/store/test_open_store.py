"""`open_store(url)`: each scheme gives its backend; anything else is an error naming the URL
and the accepted forms."""

from __future__ import annotations

from pathlib import Path

import pytest

from control.store import open_store
from control.store.etcd import EtcdStore
from control.store.memory import MemoryStore
from control.store.sqlite import SqliteStore


async def test_memory() -> None:
    s = open_store("memory://")
    assert isinstance(s, MemoryStore)
    await s.close()


async def test_sqlite_absolute_and_relative(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    s = open_store(f"sqlite://{tmp_path}/abs.db")
    assert isinstance(s, SqliteStore) and s.path == f"{tmp_path}/abs.db"
    await s.close()
    s = open_store(f"sqlite:///{tmp_path}/abs.db")  # an absolute path after sqlite:///
    assert isinstance(s, SqliteStore) and s.path == f"{tmp_path}/abs.db"
    await s.close()
    monkeypatch.chdir(tmp_path)
    s = open_store("sqlite://rel/knet.db")
    await s.create("/a", b"1")
    await s.close()
    assert (tmp_path / "rel" / "knet.db").exists()


async def test_etcd_endpoints_and_prefix_without_connecting() -> None:
    s = open_store("etcd://10.0.0.1:2379,10.0.0.2:2379/knet/")
    assert isinstance(s, EtcdStore)
    assert s.endpoints == ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
    assert s.prefix == "/knet"
    await s.close()
    plain = open_store("etcd://127.0.0.1:2379")
    assert isinstance(plain, EtcdStore) and plain.prefix == ""
    await plain.close()


@pytest.mark.parametrize(("url", "problem"), [
    ("redis://x", "unknown scheme 'redis'"),
    ("/var/lib/knet/db", "no scheme"),
    ("sqlite://", "no file path"),
    ("etcd://", "no HOST:PORT"),
])
def test_bad_urls_name_the_url_and_the_accepted_forms(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match="accepted") as info:
        open_store(url)
    text = str(info.value)
    assert repr(url) in text and problem in text
    assert "memory://" in text and "sqlite:///" in text and "etcd://HOST:PORT" in text
