"""`control.server`: the process that serves the API: bootstrap objects, kubeconfig + TLS,
token reuse, controller hooks, and a prompt stop even with a watch open."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import stat
from pathlib import Path

import aiohttp
import pytest
import yaml

from control import server
from control.server import ServerConfig, parse_listen, serve

HOOK_CALLS: list[str] = []


async def recording_hook(client: object, *, clock: object, stop: asyncio.Event) -> None:
    """A controller hook used by the test below (imported by name like the real one)."""
    pods = await client.list("pods", namespace="default")          # type: ignore[attr-defined]
    HOOK_CALLS.append(f"listed {len(pods.items)}")
    await stop.wait()
    HOOK_CALLS.append("stopped")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_listen_hosts() -> None:
    assert server.listen_hosts("127.0.0.1") == ["127.0.0.1"]
    assert server.listen_hosts("172.18.0.1") == ["127.0.0.1", "172.18.0.1"]
    assert server.listen_hosts("0.0.0.0") == ["0.0.0.0"]


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:6443") == ("127.0.0.1", 6443)
    assert parse_listen("[::1]:80") == ("::1", 80)
    for bad in ("6443", "host:80", "1.2.3.4:0", "1.2.3.4:x"):
        with pytest.raises(ValueError, match="--listen"):
            parse_listen(bad)


async def test_serve_bootstraps_and_stops_with_a_watch_open(tmp_path: Path) -> None:
    HOOK_CALLS.clear()
    config = ServerConfig(state_dir=tmp_path, port=_port(), store_url="memory://",
                          hooks=(f"{__name__}:recording_hook", "no.such.module:run_all"))
    stop = asyncio.Event()
    ready: list[str] = []
    task = asyncio.create_task(serve(config, stop=stop, on_ready=ready.append))
    while not ready:
        assert not task.done(), task
        await asyncio.sleep(0.02)
    cfg = yaml.safe_load((tmp_path / "kubeconfig").read_text())
    assert cfg["clusters"][0]["cluster"]["server"] == ready[0] == config.server_url
    token = cfg["users"][0]["user"]["token"]
    assert (tmp_path / "token").read_text().strip() == token
    assert (tmp_path / "control.pid").exists()
    assert (tmp_path / "kubeconfig").stat().st_mode & 0o077 == 0
    ctx = ssl.create_default_context(cafile=str(tmp_path / "tls.crt"))
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"},
                                     connector=aiohttp.TCPConnector(ssl=ctx)) as http:
        async with http.get(config.server_url + "/api/v1/namespaces") as r:
            names = [n["metadata"]["name"] for n in (await r.json())["items"]]
        assert names == sorted(server.SYSTEM_NAMESPACES)
        async with http.get(config.server_url + "/api/v1/namespaces/default/services/"
                            "kubernetes") as r:
            svc = await r.json()
        assert svc["spec"]["clusterIP"] == "10.96.0.1"
        assert svc["spec"]["ports"][0]["port"] == 443
        watch = await http.get(config.server_url + "/api/v1/pods",
                               params={"watch": "1", "resourceVersion": "0"})
        await asyncio.sleep(0.1)
        assert HOOK_CALLS == ["listed 0"]
        stop.set()
        await asyncio.wait_for(task, 10)                  # the open watch does not block it
        watch.close()
    assert HOOK_CALLS == ["listed 0", "stopped"]
    assert not (tmp_path / "control.pid").exists()


async def test_restart_keeps_token_and_objects(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    tokens, uids = [], []
    for _ in range(2):
        config = ServerConfig(state_dir=tmp_path, port=_port(), store_url=url, hooks=())
        stop = asyncio.Event()
        ready: list[str] = []
        task = asyncio.create_task(serve(config, stop=stop, on_ready=ready.append))
        while not ready:
            assert not task.done(), task
            await asyncio.sleep(0.02)
        token = (tmp_path / "token").read_text().strip()
        tokens.append(token)
        ctx = ssl.create_default_context(cafile=str(tmp_path / "tls.crt"))
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"},
                                         connector=aiohttp.TCPConnector(ssl=ctx)) as http:
            async with http.get(config.server_url + "/api/v1/namespaces/default") as r:
                uids.append((await r.json())["metadata"]["uid"])
            body = {"metadata": {"name": "np"}, "spec": {"type": "NodePort", "ports": [
                {"port": 80, "nodePort": 30999}]}}
            async with http.post(config.server_url + "/api/v1/namespaces/default/services",
                                 data=json.dumps(body),
                                 headers={"Content-Type": "application/json"}) as r:
                created = r.status
        stop.set()
        await asyncio.wait_for(task, 10)
        if len(tokens) == 1:
            assert created == 201
        else:
            assert created == 409          # still there after the restart
    assert tokens[0] == tokens[1] and uids[0] == uids[1]


async def test_bootstrap_endpoints_follow_the_listen_address() -> None:
    from control.api.objects import ObjectService
    from control.store.memory import MemoryStore

    objects = ObjectService(MemoryStore())
    await objects.start()
    await server.bootstrap(objects, host="172.18.0.1", port=6443)
    await server.bootstrap(objects, host="172.18.0.1", port=7443)      # a restart
    svc = await objects.get("services", "kubernetes", namespace="default")
    assert svc["spec"]["clusterIP"] == "10.96.0.1"
    assert svc["spec"]["ports"] == [{"name": "https", "port": 443, "protocol": "TCP",
                                     "targetPort": 7443}]
    slice_ = await objects.get("endpointslices", "kubernetes", namespace="default")
    assert slice_["endpoints"][0]["addresses"] == ["172.18.0.1"]
    assert slice_["ports"][0]["port"] == 7443
    assert slice_["metadata"]["labels"]["kubernetes.io/service-name"] == "kubernetes"
    ep = await objects.get("endpoints", "kubernetes", namespace="default")
    assert ep["subsets"][0]["ports"][0]["port"] == 7443
    # the server writes the slice itself: the mirroring controller must leave it alone
    assert ep["metadata"]["labels"]["endpointslice.kubernetes.io/skip-mirror"] == "true"


async def test_state_dir_and_its_secrets_are_private(tmp_path: Path) -> None:
    """Finding: token, state.db, -wal and -shm were 0644 in a 0755 state dir (an older knet
    made them so, and a restart reused them): now the dir is 0700 and they are 0600."""
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    for name in ("token", "state.db-wal", "state.db-shm"):
        (state / name).write_text("x" if name != "token" else "old-token\n")
        os.chmod(state / name, 0o644)
    config = ServerConfig(state_dir=state, port=_port(), store_url=f"sqlite:///{state}/state.db",
                          hooks=())
    stop = asyncio.Event()
    ready: list[str] = []
    task = asyncio.create_task(serve(config, stop=stop, on_ready=ready.append))
    while not ready:
        assert not task.done(), task
        await asyncio.sleep(0.02)
    try:
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        for name in ("token", "kubeconfig", "tls.key", "state.db", "state.db-wal",
                     "state.db-shm"):
            assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
