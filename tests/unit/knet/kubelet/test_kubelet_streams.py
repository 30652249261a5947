"""exec over the kubelet API with every frame style a client sends: kubectl's binary v5 frames
with the close-stdin signal, the Python client's v4 text frames (chr(channel) first), base64
text frames, and resize; against a real `sh`/`cat` process behind the real routes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from knet.kubelet import channels
from knet.kubelet.auth import KubeletAuth
from knet.kubelet.server import create_app
from knet.runtime.execsession import PipeSession

POD = "/api/v1/namespaces/default/pods/p"
ADMIN = {"Authorization": "Bearer admin-token"}


class Runtime:
    """Runs exec commands as plain local processes (what ProcessRuntime does without root)."""

    async def exec(self, sandbox: Any, argv: list[str], *, container: str, stdin: bool,
                   tty: bool) -> PipeSession:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        return PipeSession(proc)


@pytest.fixture
async def kubelet(admin_auth: KubeletAuth, serve_kubelet: Any) -> AsyncIterator[str]:
    worker = SimpleNamespace(key="default/p", sandbox=object(),
                             pod={"spec": {"containers": [{"name": "c"}]}},
                             runners=[SimpleNamespace(c={"name": "c"}, handle=None)])
    app = create_app(lambda k: worker if k == "default/p" else None,  # type: ignore[arg-type,return-value]
                     Runtime(), auth=admin_auth)
    async with serve_kubelet(app) as url:
        yield url


async def _session(url: str, protocol: str, send: list[bytes | str]) -> dict[int, bytes]:
    """Open exec, send the frames, collect every channel until the server closes."""
    codec = channels.Codec(protocol)
    got: dict[int, bytes] = {}
    async with aiohttp.ClientSession() as s, s.ws_connect(url, protocols=(protocol,),
                                                          headers=ADMIN) as ws:
        assert ws.protocol == protocol
        for frame in send:
            if isinstance(frame, str):
                await ws.send_str(frame)
            else:
                await ws.send_bytes(frame)
        async for msg in ws:
            ch, data = codec.decode(msg.data)
            got[ch] = got.get(ch, b"") + data
    return got


def _cmd(*argv: str, stdin: bool = True) -> str:
    q = urlencode([("command", a) for a in argv])
    return f"{POD}/exec?{q}&stdout=true&stderr=true" + ("&stdin=true" if stdin else "")


async def test_kubectl_binary_frames_and_close_stdin(kubelet: str) -> None:
    got = await _session(kubelet + _cmd("cat"), "v5.channel.k8s.io",
                         [b"\x00hello ", b"\x00world", b"\xff\x00"])
    assert got[1] == b"hello world"
    assert json.loads(got[3])["status"] == "Success"


async def test_python_client_text_frames_reach_stdin(kubelet: str) -> None:
    # what kubernetes.stream's write_stdin("...") sends: a TEXT frame, chr(0) + data
    got = await _session(kubelet + _cmd("head", "-c", "11"), "v4.channel.k8s.io",
                         ["\x00hello ", "\x00wörld"])
    assert got[1] == "hello wörld".encode()[:11]
    assert json.loads(got[3])["status"] == "Success"


async def test_base64_frames_both_ways(kubelet: str) -> None:
    got = await _session(kubelet + _cmd("head", "-c", "3"), "base64.channel.k8s.io",
                         ["0" + "YWJj"])                      # "abc"
    assert got[1] == b"abc"


async def test_v4_has_no_close_signal_but_a_closed_socket_ends_stdin(kubelet: str) -> None:
    # 255 is not a close on v4: cat keeps reading; a Python client closing its socket ends it
    async with aiohttp.ClientSession() as s, s.ws_connect(
            kubelet + _cmd("cat"), protocols=("v4.channel.k8s.io",), headers=ADMIN) as ws:
        await ws.send_bytes(b"\x00ab")
        await ws.send_bytes(b"\xff\x00")
        msg = await ws.receive(timeout=5)
        assert msg.data == b"\x01ab"
        with pytest.raises(asyncio.TimeoutError):
            await ws.receive(timeout=0.5)


async def test_exit_code_and_bad_frames(kubelet: str) -> None:
    got = await _session(kubelet + _cmd("sh", "-c", "read x; echo $x >&2; exit 3"),
                         "v5.channel.k8s.io",
                         [b"", "", b"\x04not json", b"\x00line\n"])
    assert got[2] == b"line\n"
    status = json.loads(got[3])
    assert status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]


def test_codec_round_trips() -> None:
    for proto in channels.EXEC_PROTOCOLS:
        c = channels.Codec(proto)
        assert c.decode(c.encode(1, b"\x00\xffdata")) == (1, b"\x00\xffdata")
    assert channels.Codec("v4.channel.k8s.io").decode("\x00hi") == (0, b"hi")
    assert channels.Codec("v5.channel.k8s.io").can_close
    assert not channels.Codec("v4.channel.k8s.io").can_close
    with pytest.raises(channels.FrameError):
        channels.Codec("base64.channel.k8s.io").decode("x!!")
    with pytest.raises(channels.FrameError):
        channels.Codec("base64.channel.k8s.io").decode("1!!")
    with pytest.raises(channels.FrameError):
        channels.Codec("v5.channel.k8s.io").decode(b"")
