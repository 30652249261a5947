"""Fixtures of the models tests: `kubectl`, a runner of the real kubectl binary (fresh
--cache-dir, a kubeconfig for a loopback server) for the tests that check what kubectl users
see of tables, defaulting, validation errors and warnings."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from control.api.app import OBJECTS, Settings, create_app
from control.api.tls import ensure_certificate, server_context
from control.store.memory import MemoryStore

KUBECTL = shutil.which("kubectl")
TOKEN = "models-test-token"


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def rows(self) -> list[list[str]]:
        return [line.split() for line in self.out.splitlines()]


Kubectl = Callable[..., Awaitable[Result]]


@pytest.fixture
def kubectl(tmp_path: Path) -> Callable[..., Kubectl]:
    """kubectl(server_url, token="", ca_pem=None) -> run(*args, stdin=None) -> Result
    (kubectl sends a bearer token only over TLS: give the server's certificate)."""
    if KUBECTL is None:
        pytest.skip("kubectl is not installed")

    def bind(server: str, token: str = "", ca_pem: bytes | None = None) -> Kubectl:
        config = tmp_path / "kubeconfig"
        cluster: dict[str, str] = {"server": server}
        if ca_pem:
            cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
        config.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "t",
            "clusters": [{"name": "t", "cluster": cluster}],
            "users": [{"name": "t", "user": {"token": token} if token else {}}],
            "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}]}))

        async def run(*args: str, stdin: str | None = None) -> Result:
            proc = await asyncio.create_subprocess_exec(
                str(KUBECTL), "--kubeconfig", str(config), "--cache-dir",
                str(tmp_path / "cache"), *args, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(
                proc.communicate(stdin.encode() if stdin else None), timeout=60)
            return Result(int(proc.returncode or 0), out.decode(), err.decode())
        return run
    return bind


@pytest.fixture
async def run(kubectl: Callable[..., Kubectl], tmp_path: Path) -> AsyncIterator[Kubectl]:
    """kubectl against knet's real API app (memory store) on loopback over TLS, namespace
    `default` made."""
    app = create_app(MemoryStore(), Settings(token=TOKEN))
    runner = web.AppRunner(app)
    await runner.setup()
    crt, key = ensure_certificate(tmp_path, ["127.0.0.1"])
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context(crt, key))
    await site.start()
    await app[OBJECTS].create("namespaces", {"metadata": {"name": "default"}})
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield kubectl(f"https://127.0.0.1:{port}", TOKEN, crt.read_bytes())
    await runner.cleanup()
