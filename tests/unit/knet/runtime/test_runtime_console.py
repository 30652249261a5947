"""Containers with `stdin: true` / `tty: true` (knet.runtime.console, on ProcessRuntime without
root): the shim keeps their stdin open (so `sh` does not exit on /dev/null), attach clients
write to it, `stdinOnce` closes it when the first client leaves, and a terminal's output
(resized by the client) lands in the log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from knet.errors import RuntimeError_
from knet.runtime import console
from knet.runtime.base import ContainerSpec, PodSandbox
from knet.runtime.process import ProcessRuntime


@pytest.fixture
def sandbox(tmp_path: Path) -> PodSandbox:
    return PodSandbox.for_pod("default", "bb", netns="unused", pod_ip="10.244.1.5",
                              pod_dir=tmp_path / "pod")


@pytest.fixture
async def rt(sandbox: PodSandbox) -> AsyncIterator[ProcessRuntime]:
    runtime = ProcessRuntime(namespaces=False)
    yield runtime
    await runtime.remove(sandbox)
    await runtime.close()


async def _log(rt: ProcessRuntime, h: object) -> str:
    return b"".join([c async for c in rt.read_logs(h, follow=False)]).decode()  # type: ignore


async def test_stdin_keeps_sh_running_until_closed(rt: ProcessRuntime,
                                                   sandbox: PodSandbox) -> None:
    h = await rt.start(sandbox, ContainerSpec(name="bb", argv=["sh"], stdin=True))
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.shield(rt.wait(h)), 0.5)     # not /dev/null
    _, writer = await console.connect(str(h.log_path))
    writer.write(console.frame(console.DATA, b"echo hi from sh\n"))
    writer.write(console.frame(console.CLOSE, b""))       # no stdinOnce: stays open
    await writer.drain()
    writer.close()
    _, writer = await console.connect(str(h.log_path))   # the next client
    writer.write(console.frame(console.DATA, b"echo again; exit 0\n"))
    await writer.drain()
    assert await asyncio.wait_for(rt.wait(h), 10) == 0
    assert await _log(rt, h) == "hi from sh\nagain\n"
    writer.close()


async def test_stdin_once_closes_when_the_first_client_leaves(rt: ProcessRuntime,
                                                              sandbox: PodSandbox) -> None:
    h = await rt.start(sandbox, ContainerSpec(name="bb", argv=["cat"], stdin=True,
                                              stdin_once=True))
    await asyncio.sleep(0.2)
    _, writer = await console.connect(str(h.log_path))
    writer.write(console.frame(console.DATA, b"once\n"))
    await writer.drain()
    writer.close()
    assert await asyncio.wait_for(rt.wait(h), 10) == 0
    assert await _log(rt, h) == "once\n"


async def test_a_terminal_with_resize(rt: ProcessRuntime, sandbox: PodSandbox) -> None:
    h = await rt.start(sandbox, ContainerSpec(
        name="bb", argv=["sh", "-c", "read x; tty; stty size; echo got $x"], stdin=True,
        tty=True))
    await asyncio.sleep(0.2)
    att = await rt.attach(h)      # the Runtime seam, as the kubelet's attach uses it
    await att.resize(cols=100, rows=30)
    await att.write_stdin(b"abc\n")
    assert await asyncio.wait_for(rt.wait(h), 10) == 0
    out = await _log(rt, h)
    assert "/dev/pts/" in out and "30 100" in out and "got abc" in out, out
    await att.close()


async def test_no_console_without_stdin(rt: ProcessRuntime, sandbox: PodSandbox) -> None:
    h = await rt.start(sandbox, ContainerSpec(name="bb", argv=["sleep", "30"]))
    with pytest.raises(FileNotFoundError):
        await console.connect(str(h.log_path))
    with pytest.raises(RuntimeError_, match="has no stdin or terminal to attach to"):
        await rt.attach(h)


async def test_attach_through_the_kubelet_api(rt: ProcessRuntime, sandbox: PodSandbox) -> None:
    """kubectl attach -i: v5 frames in, the container's output out, a Status at its exit."""
    from types import SimpleNamespace

    import aiohttp
    from aiohttp import web

    from control.auth.types import UserInfo
    from knet.kubelet.auth import KubeletAuth
    from knet.kubelet.server import create_app

    class Tokens:
        async def authenticate(self, token: str) -> UserInfo | None:
            return UserInfo("admin", groups=("system:masters",))

    c = {"name": "bb", "stdin": True, "stdinOnce": True}
    h = await rt.start(sandbox, ContainerSpec(name="bb", argv=["sh"], stdin=True,
                                              stdin_once=True))
    worker = SimpleNamespace(key="default/bb", sandbox=sandbox, pod={"spec": {"containers": [c]}},
                             runners=[SimpleNamespace(c=c, handle=h)])
    runner = web.AppRunner(create_app(lambda k: worker, rt,  # type: ignore[arg-type,return-value]
                                        auth=KubeletAuth(tokens=Tokens())))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/api/v1/namespaces/default/pods/bb/attach"
    try:
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer x"}) as s:
            async with s.get(url + "?stdin=true&stdout=true&tty=true") as r:
                assert r.status == 400
                assert "Unable to use a TTY - container bb did not allocate one" in await r.text()
            got: dict[int, bytes] = {}
            async with s.ws_connect(url + "?stdin=true&stdout=true",
                                    protocols=("v5.channel.k8s.io",)) as ws:
                await asyncio.sleep(0.3)
                await ws.send_bytes(b"\x00echo attached\n")
                await ws.send_bytes(b"\xff\x00")
                async for msg in ws:
                    got[msg.data[0]] = got.get(msg.data[0], b"") + msg.data[1:]
            assert got[1] == b"attached\n" and b"Success" in got[3]
    finally:
        await runner.cleanup()
