"""The L7 path with real aiohttp backends on 127.x and a real HTTP client: per-request
round-robin, x-knet-upstream, retries on a dead endpoint and on 503, timeout -> 504,
streaming bodies, keep-alive, bad requests."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from proxy_testkit import (
    endpoint_slice,
    free_port,
    loopback_net,
    service,
    start_proxier,
    wait_flows,
)


class Backend:
    def __init__(self, name: str, ip: str, *, status: int = 200) -> None:
        self.name, self.ip, self.status = name, ip, status
        self.hits = 0
        self.port = 0
        self.runner: web.AppRunner | None = None

    async def start(self) -> Backend:
        app = web.Application()
        app.router.add_route("*", "/", self.hello)
        app.router.add_get("/slow", self.slow)
        app.router.add_get("/big", self.big)
        app.router.add_post("/echo", self.echo)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.ip, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def hello(self, request: web.Request) -> web.Response:
        self.hits += 1
        return web.Response(text=self.name, status=self.status,
                            headers={"x-got-forwarded-for": request.headers.get(
                                "X-Forwarded-For", "")})

    async def slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")

    async def big(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)  # chunked
        for i in range(64):
            await resp.write(bytes([65 + i % 26]) * 16384)
        await resp.write_eof()
        return resp

    async def echo(self, request: web.Request) -> web.Response:
        return web.Response(body=await request.read())

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
def net() -> str:
    return loopback_net()


async def start_backends(net: str, specs: list[tuple[str, int]]) -> list[Backend]:
    return [await Backend(name, f"{net}{i + 10}", status=status).start()
            for i, (name, status) in enumerate(specs)]


def web_objs(net: str, backends: list[Backend], dead: list[tuple[str, int]] = (),
             **spec: object) -> list[dict[str, object]]:
    objs: list[dict[str, object]] = [service("web", f"{net}1", [
        {"name": "http", "port": 80, "targetPort": "http", "appProtocol": "http"}], **spec)]
    for name, ip, port in [(b.name, b.ip, b.port) for b in backends] + [
            (f"dead-{i}", ip, port) for i, (ip, port) in enumerate(dead)]:
        sl = endpoint_slice("web", [{"name": "http", "port": port, "protocol": "TCP"}],
                            [(ip, name)])
        sl["metadata"]["name"] = f"web-{name}"
        objs.append(sl)
    return objs


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        yield s


async def test_round_robin_per_request_with_upstream_header(
        net: str, session: aiohttp.ClientSession) -> None:
    bs = await start_backends(net, [("web-a", 200), ("web-b", 200), ("web-c", 200)])
    p = await start_proxier(web_objs(net, bs))
    try:
        got = []
        for _ in range(6):  # one keep-alive connection, balanced per request
            async with session.get(f"http://{net}1/") as r:
                got.append((r.status, await r.text(), r.headers["x-knet-upstream"]))
                assert r.headers["x-got-forwarded-for"] == "127.0.0.1" or \
                    r.headers["x-got-forwarded-for"].startswith("127.")
        assert got == [(200, n, f"default/{n}") for n in ("web-a", "web-b", "web-c")] * 2
        flows = await wait_flows(p.ring, 6)
        f = flows[0]
        assert (f.protocol, f.method, f.path, f.status, f.verdict, f.reason) == (
            "http", "GET", "/", 200, "FORWARDED", "rr#0")
        assert f.latency > 0 and f.bytes_received > 0
    finally:
        await p.stop()
        for b in bs:
            await b.stop()


async def test_dead_endpoint_is_retried_client_sees_200(
        net: str, session: aiohttp.ClientSession) -> None:
    bs = await start_backends(net, [("web-a", 200)])
    dead_ip = f"{net}5"
    p = await start_proxier(web_objs(net, bs, dead=[(dead_ip, free_port(dead_ip))]))
    try:
        for _ in range(4):
            async with session.get(f"http://{net}1/") as r:
                assert (r.status, await r.text()) == (200, "web-a")
        flows = await wait_flows(p.ring, 4)
        # the dead one (.5) sorts first: each of its turns is retried on web-a
        assert [(f.retries, f.reason, f.endpoint_pod, f.status) for f in flows] == [
            (1, "retry", "default/web-a", 200)] * 4
    finally:
        await p.stop()
        await bs[0].stop()


async def test_503_is_retried_on_another_endpoint(net: str,
                                                  session: aiohttp.ClientSession) -> None:
    bs = await start_backends(net, [("web-sick", 503), ("web-ok", 200)])
    p = await start_proxier(web_objs(net, bs))
    try:
        for _ in range(4):
            async with session.get(f"http://{net}1/") as r:
                assert (r.status, r.headers["x-knet-upstream"]) == (200, "default/web-ok")
        assert bs[0].hits == 4  # sorted first, so each request's turn lands on it first
        flows = await wait_flows(p.ring, 4)
        assert {(f.retries, f.reason, f.status) for f in flows} == {(1, "retry", 200)}
    finally:
        await p.stop()
        for b in bs:
            await b.stop()


async def test_retries_exhausted_returns_last_503(net: str,
                                                  session: aiohttp.ClientSession) -> None:
    bs = await start_backends(net, [("web-sick", 503)])
    p = await start_proxier(web_objs(net, bs), http_retries=2)
    try:
        async with session.get(f"http://{net}1/") as r:
            assert r.status == 503
        assert bs[0].hits == 3
        (flow,) = await wait_flows(p.ring, 1)
        assert (flow.status, flow.retries) == (503, 2)
    finally:
        await p.stop()
        await bs[0].stop()


async def test_timeout_gives_504(net: str, session: aiohttp.ClientSession) -> None:
    bs = await start_backends(net, [("web-a", 200)])
    p = await start_proxier(web_objs(net, bs), http_timeout=0.3)
    try:
        async with session.get(f"http://{net}1/slow") as r:
            assert r.status == 504
            assert "within 0.3s" in await r.text()
        async with session.get(f"http://{net}1/") as r:  # the proxy keeps serving
            assert r.status == 200
        flows = await wait_flows(p.ring, 2)
        assert (flows[0].verdict, flows[0].status) == ("TIMEOUT", 504)
    finally:
        await p.stop()
        await bs[0].stop()


async def test_no_endpoints_is_refused(net: str, session: aiohttp.ClientSession) -> None:
    # an appProtocol: http port is still a Service port: kube-proxy REJECTs it (not a 503)
    p = await start_proxier(web_objs(net, []))
    try:
        with pytest.raises(aiohttp.ClientConnectorError) as exc:
            await session.get(f"http://{net}1/")
        assert isinstance(exc.value.os_error, ConnectionRefusedError)
        if os.geteuid() == 0:
            (flow,) = await wait_flows(p.ring, 1)
            assert flow.verdict == "REFUSED"
    finally:
        await p.stop()


async def test_bodies_stream_both_ways(net: str, session: aiohttp.ClientSession) -> None:
    bs = await start_backends(net, [("web-a", 200)])
    p = await start_proxier(web_objs(net, bs))
    try:
        async with session.get(f"http://{net}1/big") as r:
            body = await r.read()
            assert len(body) == 64 * 16384 and body[:3] == b"AAA" and body[-1:] == b"L"
        payload = bytes(range(256)) * 4000
        async with session.post(f"http://{net}1/echo", data=payload) as r:
            assert await r.read() == payload

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(10):
                yield b"%d," % i

        async with session.post(f"http://{net}1/echo", data=chunks()) as r:  # chunked request
            assert await r.read() == b"0,1,2,3,4,5,6,7,8,9,"
        async with session.head(f"http://{net}1/") as r:
            assert r.status == 200
        async with session.get(f"http://{net}1/") as r:
            assert await r.text() == "web-a"
    finally:
        await p.stop()
        await bs[0].stop()


async def test_garbage_request_gets_400_and_others_are_served(
        net: str, session: aiohttp.ClientSession) -> None:
    bs = await start_backends(net, [("web-a", 200)])
    p = await start_proxier(web_objs(net, bs))
    try:
        r, w = await asyncio.open_connection(f"{net}1", 80)
        w.write(b"\x16\x03\x01garbage\r\n\r\n")
        assert (await asyncio.wait_for(r.read(), 2)).startswith(b"HTTP/1.1 400 ")
        w.close()
        async with session.get(f"http://{net}1/") as r:
            assert r.status == 200
    finally:
        await p.stop()
        await bs[0].stop()


async def test_expect_100_continue_is_answered_by_the_proxy(
        net: str, session: aiohttp.ClientSession) -> None:
    bs = await start_backends(net, [("web-a", 200)])
    p = await start_proxier(web_objs(net, bs))
    try:
        payload = b"x" * 200_000
        async with session.post(f"http://{net}1/echo", data=payload, expect100=True) as r:
            assert r.status == 200 and await r.read() == payload
    finally:
        await p.stop()
        await bs[0].stop()
