"""The L7 path parses HTTP/1.1 strictly (RFC 9112): raw bytes from a real socket through a
real proxier to a recording backend on 127.x. Every smuggling vector is answered with a short
4xx/5xx + Connection: close, the connection closed, NOTHING reaches the backend, and a
REJECTED flow says why; valid traffic still goes through whole."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web
from proxy_testkit import (
    TcpBackend,
    endpoint_slice,
    loopback_net,
    service,
    start_proxier,
    wait_flows,
)

from knet.proxy.http import HttpListener
from knet.proxy.proxier import Proxier

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
PAUSE = b"<pause>"
CLOSE = b"<close>"


class Recorder(TcpBackend):
    """A backend that records every byte it gets and answers each request head with `reply`
    (one canned response per b"\\r\\n\\r\\n" seen: enough for body-less requests); a
    PAUSE in the reply is a 0.1 s wait between two writes, a CLOSE at its end a close."""

    def __init__(self, ip: str, reply: bytes = OK) -> None:
        super().__init__("recorder", ip)
        self.reply = reply
        self.got = bytearray()

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        seen = 0
        try:
            while data := await r.read(65536):
                self.got += data
                heads = bytes(self.got).count(b"\r\n\r\n")
                for _ in range(heads - seen):
                    for i, part in enumerate(self.reply.split(PAUSE)):
                        if i:
                            await w.drain()
                            await asyncio.sleep(0.1)
                        w.write(part.removesuffix(CLOSE))
                    if self.reply.endswith(CLOSE):
                        return
                seen = heads
                await w.drain()
        except ConnectionError:
            pass
        finally:
            w.close()


@dataclass
class World:
    net: str
    backend: Recorder
    proxier: Proxier

    @property
    def listener(self) -> HttpListener:
        return next(ln for ln in self.proxier.listeners.values() if isinstance(ln, HttpListener))

    async def exchange(self, data: bytes, *, timeout: float = 3.0) -> bytes:
        """Send data, read until the proxy closes (or timeout)."""
        r, w = await asyncio.open_connection(f"{self.net}1", 80)
        try:
            w.write(data)
            await w.drain()
            out = b""
            end = asyncio.get_running_loop().time() + timeout
            while chunk := await asyncio.wait_for(
                    r.read(65536), end - asyncio.get_running_loop().time()):
                out += chunk
            return out
        finally:
            w.close()


async def make_world(reply: bytes = OK) -> World:
    net = loopback_net()
    backend = Recorder(f"{net}10", reply)
    await backend.start()
    objs = [service("web", f"{net}1", [{"name": "http", "port": 80, "targetPort": "http",
                                         "appProtocol": "http"}]),
            endpoint_slice("web", [{"name": "http", "port": backend.port, "protocol": "TCP"}],
                           [(backend.ip, "web-a")])]
    return World(net, backend, await start_proxier(objs, http_retries=0))


@pytest.fixture
async def world() -> AsyncIterator[World]:
    w = await make_world()
    yield w
    await w.proxier.stop()
    await w.backend.stop()


H = b"Host: web\r\n"
SMUGGLING = {
    "two Content-Lengths": (400, b"POST / HTTP/1.1\r\n" + H +
                            b"Content-Length: 5\r\nContent-Length: 44\r\n\r\nhello"),
    "same Content-Length twice": (400, b"POST / HTTP/1.1\r\n" + H +
                                  b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
    "space before colon": (400, b"POST / HTTP/1.1\r\n" + H + b"Content-Length : 5\r\n\r\nhello"),
    "Content-Length with a sign": (400, b"POST / HTTP/1.1\r\n" + H +
                                   b"Content-Length: +5\r\n\r\nhello"),
    "Content-Length not digits": (400, b"POST / HTTP/1.1\r\n" + H +
                                  b"Content-Length: 5x\r\n\r\nhello"),
    "Content-Length list": (400, b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5, 5\r\n\r\nhello"),
    "Content-Length overflow": (400, b"POST / HTTP/1.1\r\n" + H +
                                b"Content-Length: 99999999999999999999999\r\n\r\nhello"),
    "CL and TE": (400, b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 4\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    "TE and CL": (400, b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
                  b"Content-Length: 4\r\n\r\n0\r\n\r\n"),
    "chunked, identity": (400, b"POST / HTTP/1.1\r\n" + H +
                          b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
    "TE identity": (400, b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\n\r\nhello"),
    "TE twice": (400, b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    "TE gzip, chunked": (501, b"POST / HTTP/1.1\r\n" + H +
                         b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
    "TE in HTTP/1.0": (400, b"POST / HTTP/1.0\r\n" + H +
                       b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    "chunk size not hex": (400, b"POST / HTTP/1.1\r\n" + H +
                           b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
    "chunk size overflow": (400, b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
                            b"\r\nfffffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
    "chunk size negative": (400, b"POST / HTTP/1.1\r\n" + H +
                            b"Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n"),
    "chunk data without CRLF": (400, b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked"
                                b"\r\n\r\n5\r\nhelloXX0\r\n\r\n"),
    "chunk size line bare LF": (400, b"POST / HTTP/1.1\r\n" + H +
                                b"Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"),
    "obs-fold": (400, b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n"),
    "obs-fold of TE": (400, b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding:\r\n chunked\r\n"
                       b"\r\n0\r\n\r\n"),
    "bare LF lines": (400, b"GET / HTTP/1.1\nHost: web\n\n"),
    "bare CR in a value": (400, b"GET / HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n"),
    "NUL in a value": (400, b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n"),
    "header name not a token": (400, b"GET / HTTP/1.1\r\n" + H + b"X(A): 1\r\n\r\n"),
    "empty header name": (400, b"GET / HTTP/1.1\r\n" + H + b": 1\r\n\r\n"),
    "header line without colon": (400, b"GET / HTTP/1.1\r\n" + H + b"X-A 1\r\n\r\n"),
    "space in target": (400, b"GET /a b HTTP/1.1\r\n" + H + b"\r\n"),
    "lower-case method": (400, b"get / HTTP/1.1\r\n" + H + b"\r\n"),
    "HTTP/1.2": (400, b"GET / HTTP/1.1x\r\n" + H + b"\r\n"),
    "HTTP/0.9": (400, b"GET /\r\n\r\n"),
    "HTTP/2.0 request line": (505, b"GET / HTTP/2.0\r\n" + H + b"\r\n"),
    "no Host": (400, b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n"),
    "two Hosts": (400, b"GET / HTTP/1.1\r\n" + H + b"Host: other\r\n\r\n"),
    "TLS hello": (400, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n"),
    "CONNECT": (501, b"CONNECT web:443 HTTP/1.1\r\n" + H + b"\r\n"),
    "Upgrade with a body": (400, b"POST / HTTP/1.1\r\n" + H + b"Upgrade: h2c\r\n"
                            b"Connection: upgrade\r\nContent-Length: 5\r\n\r\nhello"),
    "head over 64 KiB": (431, b"GET / HTTP/1.1\r\n" + H +
                         b"".join(b"X-%d: %s\r\n" % (i, b"v" * 1000) for i in range(70)) +
                         b"\r\n"),
    "one huge header value": (431, b"GET / HTTP/1.1\r\n" + H + b"X-A: " + b"v" * 200_000),
    "body over 8 MiB": (413, b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 9000000\r\n\r\n"),
}


@pytest.mark.parametrize("name", list(SMUGGLING))
async def test_malformed_request_rejected_and_nothing_forwarded(world: World, name: str) -> None:
    status, raw = SMUGGLING[name]
    out = await world.exchange(raw)
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status), out[:200]
    assert b"\r\nConnection: close" in head and b"x-knet-upstream: none" in head
    await asyncio.sleep(0.05)
    assert bytes(world.backend.got) == b""  # not one byte reached the backend
    [flow] = await wait_flows(world.proxier.ring, 1)
    assert (flow.verdict, flow.status, flow.endpoint_ip) == ("REJECTED", status, "")
    assert flow.error and flow.error.encode() in body


async def test_smuggled_request_after_a_valid_one(world: World) -> None:
    """A valid request, then a smuggling attempt on the same connection (one write): the
    first is answered, the second rejected, the backend sees exactly the first."""
    raw = (b"GET /first HTTP/1.1\r\n" + H + b"\r\n"
           b"POST /second HTTP/1.1\r\n" + H + b"Content-Length: 0\r\nContent-Length: 43\r\n\r\n"
           b"GET /smuggled HTTP/1.1\r\nHost: web\r\n\r\n")
    out = await world.exchange(raw)
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(b"\r\n\r\nok") is False
    assert out.count(b"HTTP/1.1 ") == 2 and b"HTTP/1.1 400 Bad Request\r\n" in out
    got = bytes(world.backend.got)
    assert got.startswith(b"GET /first HTTP/1.1\r\n") and got.count(b"HTTP/1.1") == 1
    assert b"smuggled" not in got and b"second" not in got


async def test_slow_head_is_cut_off(world: World) -> None:
    """Slowloris: a header line every 0.2 s; the head must be done within header_timeout."""
    world.listener.header_timeout = 0.6
    r, w = await asyncio.open_connection(f"{world.net}1", 80)
    loop = asyncio.get_running_loop()
    start = loop.time()
    w.write(b"GET / HTTP/1.1\r\n" + H)
    out = b""
    for i in range(20):  # a line every 0.2 s until the proxy answers
        try:
            out = await asyncio.wait_for(r.read(65536), 0.2)
            break
        except TimeoutError:
            w.write(b"X-%d: 1\r\n" % i)
    w.close()
    assert out.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert loop.time() - start < 2.5
    assert world.backend.got == b""
    [flow] = await wait_flows(world.proxier.ring, 1)
    assert (flow.verdict, flow.status) == ("TIMEOUT", 408)
    assert "request head not complete within 0.6s" in flow.error


async def test_silent_and_idle_connections_are_closed(world: World) -> None:
    world.listener.header_timeout, world.listener.idle_timeout = 0.3, 0.6
    r, w = await asyncio.open_connection(f"{world.net}1", 80)  # says nothing
    assert await asyncio.wait_for(r.read(), 2) == b""
    w.close()
    r, w = await asyncio.open_connection(f"{world.net}1", 80)  # one request, then idle
    w.write(b"GET / HTTP/1.1\r\n" + H + b"\r\n")
    loop = asyncio.get_running_loop()
    start = loop.time()
    out = await asyncio.wait_for(r.read(), 3)
    w.close()
    assert out.startswith(b"HTTP/1.1 200 OK") and 0.4 < loop.time() - start < 2.5
    assert len(await wait_flows(world.proxier.ring, 1)) == 1  # closing the idle: no record


@pytest.mark.parametrize("reply, why", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     "Transfer-Encoding"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, identity\r\n\r\nok", "Transfer-Encoding"),
    (b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok", "header"),
    (b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok", "whitespace"),
    (b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok", "status"),
    (b"SPDY/3 200 OK\r\n\r\n", "malformed"),
    (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n", "101"),
])
async def test_malformed_response_is_a_502(reply: bytes, why: str) -> None:
    w = await make_world(reply)
    try:
        out = await w.exchange(b"GET / HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 502 Bad Gateway\r\n"), out[:200]
        assert b"ok" not in out.partition(b"\r\n\r\n")[2][-3:]
        [flow] = await wait_flows(w.proxier.ring, 1)
        assert (flow.verdict, flow.status) == ("ERROR", 502) and why in flow.error, flow.error
    finally:
        await w.proxier.stop()
        await w.backend.stop()


async def test_response_delimited_by_the_close_is_relayed_whole() -> None:
    w = await make_world(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nuntil" + PAUSE + b" the end" + CLOSE)
    try:
        out = await w.exchange(b"GET / HTTP/1.1\r\n" + H + b"\r\n")
        head, _, body = out.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n") and body == b"until the end"
        assert b"Connection: close" in head
        [flow] = await wait_flows(w.proxier.ring, 1)
        assert (flow.verdict, flow.status, flow.error) == ("FORWARDED", 200, "")
    finally:
        await w.proxier.stop()
        await w.backend.stop()


async def test_bad_chunk_mid_response_closes_the_client() -> None:
    reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n" + PAUSE + b"zz\r\n"
    w = await make_world(reply)
    try:
        out = await w.exchange(b"GET / HTTP/1.1\r\n" + H + b"\r\n")
        head, _, body = out.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK") and body == b"2\r\nok\r\n"  # then cut
        [flow] = await wait_flows(w.proxier.ring, 1)
        assert flow.verdict == "ERROR" and "chunk" in flow.error
    finally:
        await w.proxier.stop()
        await w.backend.stop()


# valid traffic, through a real aiohttp backend (its own parser), on raw sockets


async def _aio_world() -> tuple[World, web.AppRunner]:
    net = loopback_net()

    async def echo(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.query.get("chunked"):
            resp = web.StreamResponse()
            await resp.prepare(request)
            for i in range(0, len(body), 70_000):
                await resp.write(body[i:i + 70_000])
            await resp.write_eof()
            return resp
        return web.Response(body=body, headers={"x-method": request.method,
                                                "x-te": request.headers.get("Transfer-Encoding", "")})

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]))

    app = web.Application(client_max_size=16 << 20)
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/status/{code}", status)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, f"{net}10", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    objs = [service("web", f"{net}1", [{"name": "http", "port": 80, "targetPort": "http",
                                         "appProtocol": "http"}]),
            endpoint_slice("web", [{"name": "http", "port": port, "protocol": "TCP"}],
                           [(f"{net}10", "web-a")])]
    return World(net, Recorder(f"{net}10"), await start_proxier(objs)), runner


@pytest.fixture
async def aio() -> AsyncIterator[World]:
    w, runner = await _aio_world()
    yield w
    await w.proxier.stop()
    await runner.cleanup()


async def read_response(r: asyncio.StreamReader, *, head_only: bool = False) -> tuple[
        bytes, bytes]:
    """One response off a keep-alive connection: (head, de-chunked body)."""
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)
    low = head.lower()
    if head_only or b" 204 " in head[:13] or b" 304 " in head[:13]:
        return head, b""
    if b"transfer-encoding: chunked" in low:
        body = b""
        while True:
            size = int((await r.readuntil(b"\r\n"))[:-2], 16)
            body += (await r.readexactly(size + 2))[:-2]
            if size == 0:
                return head, body
    n = int(low.split(b"content-length: ")[1].split(b"\r\n")[0])
    return head, await r.readexactly(n)


async def test_chunked_request_and_pipelined_keep_alive(aio: World) -> None:
    r, w = await asyncio.open_connection(f"{aio.net}1", 80)
    w.write(b"POST /echo HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nX-T: 1\r\n\r\n"
            b"GET /status/204 HTTP/1.1\r\nHost: web\r\n\r\n"
            b"HEAD /echo HTTP/1.1\r\nHost: web\r\n\r\n"
            b"GET /status/304 HTTP/1.1\r\nHost: web\r\n\r\n"
            b"PUT /echo HTTP/1.1\r\nHost: web\r\nContent-Length: 3\r\n\r\nabc")
    got = [await read_response(r), await read_response(r), await read_response(r, head_only=True),
           await read_response(r), await read_response(r)]
    w.close()
    assert [h.split(b"\r\n")[0] for h, _ in got] == [
        b"HTTP/1.1 200 OK", b"HTTP/1.1 204 No Content", b"HTTP/1.1 200 OK",
        b"HTTP/1.1 304 Not Modified", b"HTTP/1.1 200 OK"]
    assert got[0][1] == b"hello world" and b"x-te: \r\n" in got[0][0]  # sent on with a length
    assert b"x-method: HEAD" in got[2][0] and got[4][1] == b"abc"
    assert all(b"Connection: keep-alive" in h for h, _ in got)
    flows = await wait_flows(aio.proxier.ring, 5)
    assert [(f.method, f.status, f.verdict) for f in flows] == [
        ("POST", 200, "FORWARDED"), ("GET", 204, "FORWARDED"), ("HEAD", 200, "FORWARDED"),
        ("GET", 304, "FORWARDED"), ("PUT", 200, "FORWARDED")]


async def test_expect_100_continue(aio: World) -> None:
    r, w = await asyncio.open_connection(f"{aio.net}1", 80)
    w.write(b"POST /echo HTTP/1.1\r\nHost: web\r\nExpect: 100-continue\r\nContent-Length: 4\r\n"
            b"\r\n")
    assert await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 3) == b"HTTP/1.1 100 Continue\r\n\r\n"
    w.write(b"body")
    head, body = await read_response(r)
    w.close()
    assert head.startswith(b"HTTP/1.1 200 OK") and body == b"body"


async def test_large_bodies_both_ways_byte_for_byte(aio: World) -> None:
    payload = bytes(range(256)) * (6 << 12)  # 6 MiB
    for query, chunked in ((b"", False), (b"?chunked=1", True)):
        r, w = await asyncio.open_connection(f"{aio.net}1", 80)
        w.write(b"POST /echo%s HTTP/1.1\r\nHost: web\r\nContent-Length: %d\r\n\r\n"
                % (query, len(payload)) + payload)
        head, body = await read_response(r)
        w.close()
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert (b"Transfer-Encoding: chunked" in head) == chunked
        assert body == payload
