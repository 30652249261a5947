"""An agent's view survives a control-plane restart: an Informer over HttpClient keeps its
cache while `knet control` is down, reconnects with back-off when it is back (same state dir,
same port, SQLite store), and catches up with what changed meanwhile."""

from __future__ import annotations

import asyncio
from pathlib import Path

from simnodes import free_port, start_control

from control.client import HttpClient
from control.informer import Informer


def cm(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {"k": name}}


async def wait_for(pred, timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        assert asyncio.get_running_loop().time() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.1)


async def test_informer_rides_out_a_control_plane_restart(tmp_path: Path) -> None:
    port = free_port()
    with start_control(tmp_path, port=port) as kubeconfig:
        client = HttpClient.from_kubeconfig(kubeconfig, timeout=3)
        await client.create("configmaps", cm("before"))
        inf = Informer(client, "configmaps", namespace="default", max_backoff=1.0)
        inf.start()
        await inf.wait_synced(10)
        assert inf.get("default/before") is not None
    # down: the cache is still there
    await asyncio.sleep(1.5)
    assert inf.get("default/before") is not None
    try:
        with start_control(tmp_path, port=port):
            writer = HttpClient.from_kubeconfig(kubeconfig, timeout=3)
            try:
                await writer.create("configmaps", cm("after"))
                await writer.delete("configmaps", "before", namespace="default")
                await wait_for(lambda: inf.get("default/after") is not None
                               and inf.get("default/before") is None, 20,
                               "informer caught up after the restart")
            finally:
                await writer.close()
    finally:
        await inf.stop()
        await client.close()
