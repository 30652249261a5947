"""The whole cluster on a real etcd (`knet up --store etcd://...`): the same Deployment
becomes Ready pods, and its objects are in etcd. (SQLite is the default every other
cluster test uses; its crash safety is tested at the store level.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from clusterkit import WEB_DEPLOYMENT, Cluster

from control.store.etcd_server import LocalEtcd


@pytest.fixture
def etcd(tmp_path: Path):  # type: ignore[no-untyped-def]
    server = asyncio.run(LocalEtcd.start(tmp_path / "etcd"))
    try:
        yield server
    finally:
        asyncio.run(server.stop())


def test_cluster_on_a_real_etcd(tmp_path: Path, etcd: LocalEtcd) -> None:
    c = Cluster(tmp_path / "state", tmp_path / "kubecache")
    c.knet("up", "--nodes", "1", "--state-dir", str(c.state_dir), "--store",
           f"etcd://{etcd.client}")
    try:
        c.kubectl("apply", "-f", "-", input=WEB_DEPLOYMENT)
        pods = c.ready_pods("app=web", 3)
        assert all(p["spec"]["nodeName"] == "node-1" for p in pods)
        keys = asyncio.run(_etcd_keys(etcd.client))
        assert any(k.startswith("/registry/deployments/default/web") for k in keys)
    finally:
        c.knet("down", "--state-dir", str(c.state_dir), check=False)


async def _etcd_keys(endpoint: str) -> list[str]:
    from control.store.etcd import EtcdStore

    store = EtcdStore([endpoint])
    try:
        kvs, _ = await store.list("/registry/")
        return [kv.key for kv in kvs]
    finally:
        await store.close()
