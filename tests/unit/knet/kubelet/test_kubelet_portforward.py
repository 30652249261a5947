"""pods/portforward on the kubelet API against a real TCP server on 127.0.0.1: kubectl's
SPDY-over-WebSocket streams (frames cut at arbitrary points, headers zlib-compressed with the
SPDY dictionary) and the Python client's v4 channel pairs; a refused port is reported on the
error stream in containerd's words."""

from __future__ import annotations

import asyncio
import socket
import zlib
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from knet.kubelet import spdy
from knet.kubelet.auth import KubeletAuth
from knet.kubelet.portforward import netns_dialer
from knet.kubelet.server import create_app

POD = "/api/v1/namespaces/default/pods/p"
ADMIN = {"Authorization": "Bearer admin-token"}
WORKER = SimpleNamespace(key="default/p", sandbox=SimpleNamespace(netns="knet-p-x"),
                         pod={"spec": {"containers": [{"name": "c"}]}},
                         runners=[SimpleNamespace(c={"name": "c"}, handle=None)])


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while line := await r.readline():          # until the client's FIN
            w.write(b"echo:" + line)
            await w.drain()
        w.close()
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@pytest.fixture
async def kubelet(admin_auth: KubeletAuth, serve_kubelet: Any) -> AsyncIterator[str]:
    app = create_app(lambda k: WORKER if k == "default/p" else None,  # type: ignore[arg-type,return-value]
                     None, auth=admin_auth, dialer=lambda sb: netns_dialer(None, sb.netns))
    async with serve_kubelet(app) as url:
        yield f"{url}{POD}/portforward"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _kubectl(url: str, port: int, payload: bytes) -> dict[int, bytes]:
    """What kubectl does per local connection: error stream, data stream, data, FIN."""
    c = spdy.ClientWriter()
    wire = (c.syn_stream(1, {"streamtype": "error", "port": str(port), "requestid": "0"})
            + c.data(1, b"", fin=True)
            + c.syn_stream(3, {"streamtype": "data", "port": str(port), "requestid": "0"})
            + c.data(3, payload, fin=True) + c.ping(7))
    parser, got = spdy.Parser(), {}
    replies: set[int] = set()
    fins: set[int] = set()
    parser._inflate = zlib.decompressobj()            # our replies carry no dictionary
    async with aiohttp.ClientSession() as s, s.ws_connect(
            url, protocols=("SPDY/3.1+portforward.k8s.io",), headers=ADMIN) as ws:
        for i in range(0, len(wire), 7):               # tunnelled bytes arrive cut anywhere
            await ws.send_bytes(wire[i:i + 7])
        while fins != {1, 3}:
            msg = await ws.receive(timeout=5)
            for f in parser.feed(msg.data):
                if f.type == spdy.SYN_REPLY:
                    replies.add(f.stream)
                elif f.type == spdy.PING:
                    got[-1] = f.value.to_bytes(4, "big")
                elif f.type == 0:
                    got[f.stream] = got.get(f.stream, b"") + f.data
                    if f.fin:
                        fins.add(f.stream)
    assert replies == {1, 3}
    return got


async def test_kubectl_spdy_streams_reach_the_port(kubelet: str, echo_port: int) -> None:
    got = await _kubectl(kubelet, echo_port, b"hello\nworld")
    assert got[3] == b"echo:hello\necho:world"
    assert got.get(1, b"") == b""
    assert got[-1] == (7).to_bytes(4, "big")


async def test_refused_port_is_reported_like_containerd(kubelet: str) -> None:
    port = _free_port()
    got = await _kubectl(kubelet, port, b"x")
    message = got[1].decode()
    assert message.startswith(f"error forwarding port {port} to pod knet-p-x, uid : failed to "
                              "execute portforward in network namespace")
    assert (f"failed to connect to localhost:{port} inside namespace \"knet-p-x\", IPv4: dial "
            f"tcp4 127.0.0.1:{port}: connect: connection refused") in message
    assert got.get(3, b"") == b""


async def test_python_client_channel_pairs(kubelet: str, echo_port: int) -> None:
    refused = _free_port()
    async with aiohttp.ClientSession() as s, s.ws_connect(
            f"{kubelet}?ports={echo_port},{refused}", protocols=("v4.channel.k8s.io",),
            headers=ADMIN) as ws:
        first = [(await ws.receive(timeout=5)).data for _ in range(4)]
        assert first == [bytes([0]) + echo_port.to_bytes(2, "little"),
                         bytes([1]) + echo_port.to_bytes(2, "little"),
                         bytes([2]) + refused.to_bytes(2, "little"),
                         bytes([3]) + refused.to_bytes(2, "little")]
        error = (await ws.receive(timeout=5)).data
        assert error[0] == 3 and b"connection refused" in error
        await ws.send_bytes(b"\x00pi")
        await ws.send_bytes(b"\x00ng\n")
        assert (await ws.receive(timeout=5)).data == b"\x00echo:ping\n"


async def test_bad_requests(kubelet: str) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(kubelet, headers=ADMIN) as r:
            assert r.status == 400 and "WebSocket" in await r.text()
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await s.ws_connect(f"{kubelet}?ports=0", protocols=("v4.channel.k8s.io",),
                               headers=ADMIN)


def test_spdy_dictionary_and_codec() -> None:
    assert len(spdy.DICTIONARY) == 1423
    c, p = spdy.ClientWriter(), spdy.Parser()
    frames = list(p.feed(c.syn_stream(5, {"Port": "80", "streamType": "data"})
                         + c.syn_stream(7, {"port": "81"}) + spdy.Writer.data(5, b"abc")))
    assert frames[0].headers == {"port": "80", "streamtype": "data"} and frames[0].stream == 5
    assert frames[1].headers == {"port": "81"}
    assert (frames[2].type, frames[2].stream, frames[2].data) == (0, 5, b"abc")
    with pytest.raises(spdy.SpdyError):
        list(spdy.Parser().feed(b"\x80\x02\x00\x01\x00\x00\x00\x00"))


async def test_data_sent_before_the_pod_connection_is_up_is_kept(
        echo_port: int, admin_auth: KubeletAuth, serve_kubelet: Any) -> None:
    """The Python client writes as soon as the socket opens: a slow dial must not drop it."""
    base = netns_dialer(None, "knet-p-x")

    async def slow(port: int) -> Any:
        await asyncio.sleep(0.3)
        return await base(port)

    app = create_app(lambda k: WORKER,  # type: ignore[arg-type,return-value]
                     None, auth=admin_auth, dialer=lambda sb: slow)
    async with serve_kubelet(app) as url, aiohttp.ClientSession() as s, s.ws_connect(
            f"{url}{POD}/portforward?ports={echo_port}", protocols=("v4.channel.k8s.io",),
            headers=ADMIN) as ws:
        await ws.send_bytes(b"\x00early\n")
        frames = [(await ws.receive(timeout=5)).data for _ in range(3)]
        assert frames[2] == b"\x00echo:early\n"
