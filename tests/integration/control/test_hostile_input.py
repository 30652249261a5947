"""Hostile input against a real `knet control` over real TLS (issue 10, API side), while a
second client keeps creating objects: every hostile request gets its 4xx within a second,
nothing of it is stored, the slow-header client is cut off, and every normal create
succeeds meanwhile."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterator

import aiohttp
import pytest
import yaml
from simnodes import start_control

from control.api.listen import HEAD_TIMEOUT

NS = "/api/v1/namespaces/default"
DEEP_JSON = (b'{"apiVersion":"v1","kind":"Pod","metadata":{"name":"deep"},"x":'
             + b'{"a":' * 100_000 + b"1" + b"}" * 100_001)
DEEP_3MB = b"[" * (3 * 1024 * 1024 - 1)
LAUGHS = b"""apiVersion: v1
kind: Pod
metadata: {name: laughs}
spec:
  containers: [{name: c, image: knet/whoami}]
  x:
    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
"""
# (what, method, path, body, content type, expected status)
HOSTILE = [
    ("100,000 nested objects", "POST", f"{NS}/pods", DEEP_JSON, "application/json", 400),
    ("3 MB of [", "POST", f"{NS}/pods", DEEP_3MB, "application/json", 400),
    ("billion laughs", "POST", f"{NS}/pods", LAUGHS, "application/yaml", 413),
    ("recursive alias", "POST", f"{NS}/configmaps",
     b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: loop}\nx: &a [*a]\n",
     "application/yaml", 400),
    ("watch from 10**20", "GET", f"{NS}/pods?watch=true&resourceVersion=99999999999999999999",
     b"", "", 400),
    ("list from garbage", "GET", f"{NS}/pods?resourceVersion=abc", b"", "", 400),
    ("get from garbage", "GET", f"{NS}/pods/x?resourceVersion=1x", b"", "", 400),
    ("limit beyond int64", "GET", f"{NS}/pods?limit=99999999999999999999", b"", "", 400),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    state = tmp_path_factory.mktemp("control")
    with start_control(state) as kubeconfig:
        cluster = yaml.safe_load(kubeconfig.read_text())
        yield cluster["clusters"][0]["cluster"]["server"], cluster["users"][0]["user"]["token"]


def _tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def _writer(session: aiohttp.ClientSession, url: str, stop: asyncio.Event,
                  statuses: list[int]) -> None:
    i = 0
    while not stop.is_set():
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"good-{i}"},
                "data": {"i": str(i)}}
        async with session.post(f"{url}{NS}/configmaps", json=body) as r:
            statuses.append(r.status)
        i += 1
        await asyncio.sleep(0.01)


async def _drip(host: str, port: int, every: float) -> float:
    """One header line every `every` seconds over TLS; seconds until the server hangs up."""
    reader, writer = await asyncio.open_connection(host, port, ssl=_tls())
    start = time.monotonic()
    try:
        writer.write(b"GET /version HTTP/1.1\r\n")
        for i in range(int(3 * HEAD_TIMEOUT / every)):
            try:
                data = await asyncio.wait_for(reader.read(1024), every)
            except TimeoutError:
                writer.write(f"X-Slow-{i}: {i}\r\n".encode())
                continue
            except (ConnectionError, ssl.SSLError):
                return time.monotonic() - start
            if data == b"":
                return time.monotonic() - start
        return float("inf")
    finally:
        writer.close()


async def test_hostile_requests_get_fast_4xx_and_never_disturb_a_writer(
        server: tuple[str, str]) -> None:
    url, token = server
    headers = {"Authorization": f"Bearer {token}"}
    statuses: list[int] = []
    stop = asyncio.Event()
    connector = aiohttp.TCPConnector(ssl=_tls())
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        host, port = url.removeprefix("https://").split(":")
        drip = asyncio.create_task(_drip(host, int(port), 5.0))
        writer = asyncio.create_task(_writer(session, url, stop, statuses))
        try:
            await asyncio.sleep(0.5)
            for what, method, path, body, ctype, code in HOSTILE:
                start = time.monotonic()
                async with session.request(method, url + path, data=body or None,
                                           headers={"Content-Type": ctype} if ctype else {}
                                           ) as r:
                    status, reply = r.status, await r.json()
                took = time.monotonic() - start
                assert (status, reply.get("kind")) == (code, "Status"), (what, reply)
                assert took < 1.0, f"{what}: {took:.2f} s"
            async with session.get(f"{url}{NS}/pods?limit=-5") as r:
                assert r.status == 200 and (await r.json())["items"] == []
            async with session.get(f"{url}{NS}/pods?watch=true&timeoutSeconds=2"
                                   f"&resourceVersion={2**64 - 1}") as r:
                assert r.status == 200 and await r.read() == b""
            hung_up_after = await drip
        finally:
            stop.set()
            await writer
            drip.cancel()
        assert HEAD_TIMEOUT - 1 <= hung_up_after <= HEAD_TIMEOUT + 6, hung_up_after
        assert len(statuses) > 50 and set(statuses) == {201}, statuses[-5:]
        async with session.get(f"{url}{NS}/configmaps") as r:
            names = {i["metadata"]["name"] for i in (await r.json())["items"]}
        assert len({n for n in names if n.startswith("good-")}) == len(statuses)
        assert "loop" not in names
        async with session.get(f"{url}{NS}/pods") as r:
            assert (await r.json())["items"] == []
