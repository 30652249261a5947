"""The API server's listening sockets over real TLS: a client dripping its request head is
cut off after the head timeout while others are served, a completed head is never cut off
(a long watch outlives the timeout), and oversized header fields are refused."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from control.api import listen
from control.api.app import Settings, create_app
from control.api.tls import ensure_certificate, server_context
from control.store.memory import MemoryStore

TOKEN = "s3cret"
HEAD_TIMEOUT = 1.0
IDLE_TIMEOUT = 2.0


def _client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@pytest.fixture
async def port(tmp_path: Path) -> AsyncIterator[int]:
    crt, key = ensure_certificate(tmp_path, ["127.0.0.1"])
    runner = web.AppRunner(create_app(MemoryStore(), Settings(token=TOKEN)),
                           **{**listen.HANDLER_ARGS, "keepalive_timeout": IDLE_TIMEOUT})
    await runner.setup()
    server = await listen.listen(runner, "127.0.0.1", 0, ssl_context=server_context(crt, key),
                                 head_timeout=HEAD_TIMEOUT)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await runner.cleanup()


async def _request(port: int, head: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=_client_tls())
    try:
        writer.write(head)
        return await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()


def _get(path: str, *extra: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: knet", f"Authorization: Bearer {TOKEN}",
             "Connection: close", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _drip(port: int) -> float:
    """Send a request head one line at a time, every 0.3 s; seconds until the server hangs
    up (or 10 if it never does)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=_client_tls())
    start = time.monotonic()
    try:
        writer.write(b"GET /version HTTP/1.1\r\n")
        for i in range(33):
            await asyncio.sleep(0.3)
            writer.write(f"X-Slow-{i}: {i}\r\n".encode())
            try:
                await writer.drain()
            except ConnectionError:
                return time.monotonic() - start
            if reader.at_eof() or writer.transport.is_closing():
                return time.monotonic() - start
        try:
            data = await asyncio.wait_for(reader.read(1024), 0.5)
        except (ConnectionError, ssl.SSLError, TimeoutError):
            return time.monotonic() - start
        return time.monotonic() - start if data == b"" else 10.0
    finally:
        writer.close()


async def test_a_dripping_head_is_cut_off_while_others_are_served(port: int) -> None:
    drip = asyncio.create_task(_drip(port))
    served = []
    while not drip.done():
        reply = await _request(port, _get("/version"))
        served.append(reply.split(b"\r\n", 1)[0])
        await asyncio.sleep(0.2)
    elapsed = await drip
    assert HEAD_TIMEOUT <= elapsed < HEAD_TIMEOUT + 2, elapsed
    assert served and set(served) == {b"HTTP/1.1 200 OK"}


async def test_a_complete_head_is_not_cut_off(port: int) -> None:
    """A watch (a head, then a long response) outlives the head timeout."""
    start = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=_client_tls())
    try:
        writer.write(_get("/api/v1/namespaces?watch=true&timeoutSeconds=3"))
        body = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    assert body.startswith(b"HTTP/1.1 200 OK")
    assert time.monotonic() - start >= 2.5                 # ended by timeoutSeconds, not by us


async def test_oversized_header_fields_are_refused(port: int) -> None:
    reply = await _request(port, _get("/version", "X-Big: " + "a" * 20_000))
    assert reply.split(b" ", 2)[1] in (b"400", b"431"), reply[:200]
    many = [f"X-H{i}: v" for i in range(200)]
    reply = await _request(port, _get("/version", *many))
    assert reply.split(b" ", 2)[1] in (b"400", b"431"), reply[:200]
    assert (await _request(port, _get("/version"))).startswith(b"HTTP/1.1 200 OK")


async def test_a_dripping_second_head_is_cut_off_by_the_idle_timeout(port: int) -> None:
    """After a first request on a kept-alive connection, a head that never completes leaves
    the handler idle: aiohttp's keep-alive timeout closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=_client_tls())
    try:
        writer.write(_get("/version").replace(b"Connection: close", b"Connection: keep-alive"))
        first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert first.startswith(b"HTTP/1.1 200 OK")
        start = time.monotonic()
        writer.write(b"GET /version HTTP/1.1\r\n")
        for i in range(40):
            try:
                data = await asyncio.wait_for(reader.read(65536), 0.3)
            except TimeoutError:
                writer.write(f"X-Slow-{i}: {i}\r\n".encode())
                continue
            except (ConnectionError, ssl.SSLError):
                break
            if data == b"":
                break
        elapsed = time.monotonic() - start
    finally:
        writer.close()
    assert elapsed < IDLE_TIMEOUT + 2, elapsed
