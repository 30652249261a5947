"""`python -m bench api`: the API server through HTTP, memory store as the anchor, SQLite beside.

For each store, `knet control --no-controllers` runs as a subprocess (TLS on loopback, as
users get it) and this process is the client (bearer token, keep-alive; creates and watches
on light asyncio-stream connections, see `RawClient`; 50 clients are 50 persistent
connections): pods created per second one at a time and from 50 concurrent clients, the
latency of listing 1,000 and 10,000 pods, and the delay from a write (HTTP PATCH) to each of
100 HTTP watchers receiving the event (median, p99). The server's own CPU time per create and
per fanned-out write is reported too: unlike the rates, it does not depend on what else the
machine runs; so is this client's CPU per create (on a 2-core machine the client's core caps
the rate too). Issue 3's goals on
SQLite are for the API alone: >= 2,000 creates/s and a median write-to-watcher delay under
10 ms with 100 watchers. The column `sqlite+controllers` runs the controllers as well (each
pod create then also wakes the scheduler, which records FailedScheduling: there are no
nodes), so that their cost is shown, not hidden. Every column authorizes with Node,RBAC (the
default) except `+rbacoff` ones, which let any authenticated user do anything (knet before
RBAC): `memory` beside `memory+rbacoff` is what authorization costs (goal: within 10%).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml  # type: ignore[import-untyped]

from bench.common import (
    Metric,
    fanout_delays_ms,
    latencies_ms,
    median,
    ops_per_second,
    percentile,
    side_by_side,
)
from control.server import AUTHZ_MODE_ENV

NAME = "api"
DESCRIPTION = ("API server over HTTP (memory anchor, sqlite): pod creates/s seq and 50 "
               "concurrent, list ms at 1k/10k pods, write->100 HTTP watchers delay")


_NAME = "NAME-PLACEHOLDER"
REQUEST_TIMEOUT = 60.0


def _pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "bench", "tier": "web"},
                         "annotations": {"bench/note": "x" * 200}},
            "spec": {"containers": [{"name": "web", "image": "knet/whoami",
                                     "ports": [{"containerPort": 8080, "name": "http"}],
                                     "env": [{"name": f"E{i}", "value": "v" * 20}
                                             for i in range(8)],
                                     "resources": {"requests": {"cpu": "100m",
                                                                "memory": "64Mi"}}}]}}


class RawClient:
    """POSTs over persistent HTTP/1.1 keep-alive connections, and watch streams, on plain
    asyncio streams (TLS, bearer token, every status checked): a load generator far cheaper
    per request and per event than aiohttp's client, so that on a small machine the client's
    own CPU (50 clients, 100 watchers in this one process) skews the figures less. One
    connection per concurrent client, kept for the whole run."""

    def __init__(self, base: str, token: str, ctx: ssl.SSLContext) -> None:
        url = urllib.parse.urlsplit(base)
        self.host, self.port, self.ctx = url.hostname or "127.0.0.1", url.port or 443, ctx
        self.auth = f"Host: {url.netloc}\r\nAuthorization: Bearer {token}\r\n".encode()
        self.head = self.auth + b"Content-Type: application/json\r\n"
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened: list[asyncio.StreamWriter] = []

    async def post(self, path: str, body: bytes) -> bytes:
        async with asyncio.timeout(REQUEST_TIMEOUT):
            if self.idle:
                reader, writer = self.idle.pop()
            else:
                reader, writer = await asyncio.open_connection(self.host, self.port,
                                                               ssl=self.ctx)
                self.opened.append(writer)
            writer.write(b"POST %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s" % (
                path.encode(), self.head, len(body), body))
            head = await reader.readuntil(b"\r\n\r\n")
            at = head.lower().find(b"\r\ncontent-length:")
            if at < 0:
                raise RuntimeError(f"POST {path}: a response without Content-Length: {head!r}")
            raw = await reader.readexactly(int(head[at + 17:head.index(b"\r\n", at + 2)]))
        self.idle.append((reader, writer))
        if head[9:12] not in (b"200", b"201"):
            raise RuntimeError(f"POST {path}: {head[:40]!r} {raw[:300]!r}")
        return raw

    async def watch(self, path: str, rv: str) -> AsyncIterator[dict[str, Any]]:
        """The events of a watch from `rv` (chunked newline-delimited JSON), decoded."""
        async with asyncio.timeout(REQUEST_TIMEOUT):
            reader, writer = await asyncio.open_connection(self.host, self.port, ssl=self.ctx)
            self.opened.append(writer)
            writer.write(b"GET %s?watch=1&resourceVersion=%s&timeoutSeconds=600 HTTP/1.1\r\n"
                         b"%s\r\n" % (path.encode(), rv.encode(), self.auth))
            head = await reader.readuntil(b"\r\n\r\n")
        if head[9:12] != b"200" or b"chunked" not in head.lower():
            raise RuntimeError(f"watch {path}: {head!r}")
        pending = b""
        while size := int((await reader.readline()).strip() or b"0", 16):
            pending += (await reader.readexactly(size + 2))[:-2]
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield orjson.loads(line)

    async def close(self) -> None:
        for writer in self.opened:
            writer.close()
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                async with asyncio.timeout(5):
                    await writer.wait_closed()


class Server:
    """`knet control` in a subprocess, and an HTTP session authenticated against it."""

    def __init__(self, store: str, workdir: Path, *, concurrency: int) -> None:
        self.store, self.workdir, self.concurrency = store, workdir, concurrency
        self.controllers = "+controllers" in store
        self.rbac = "+rbacoff" not in store
        self.store_kind = store.split("+")[0]

    async def __aenter__(self) -> Server:  # noqa: PYI034
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        url = "memory://" if self.store_kind == "memory" else f"sqlite:///{self.workdir}/state.db"
        self.log = open(self.workdir / "control.log", "w")  # noqa: SIM115, ASYNC230
        self.proc = subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, "-m", "knet.cli.main", "control", "--state-dir",
             str(self.workdir), "--listen", f"127.0.0.1:{port}", "--store", url]
            + ([] if self.controllers else ["--no-controllers"]),
            stdout=self.log, stderr=subprocess.STDOUT,
            env={**os.environ, AUTHZ_MODE_ENV: "Node,RBAC" if self.rbac else "Authenticated"})
        config = self.workdir / "kubeconfig"
        deadline = time.monotonic() + 30
        while not config.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"knet control did not start: see {self.log.name}")
            await asyncio.sleep(0.05)
        cfg = yaml.safe_load(config.read_text())
        self.base = cfg["clusters"][0]["cluster"]["server"]
        token = cfg["users"][0]["user"]["token"]
        ctx = ssl.create_default_context(cafile=str(self.workdir / "tls.crt"))
        self.session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {token}"},
            connector=aiohttp.TCPConnector(ssl=ctx, limit=self.concurrency + 110))
        self.raw = RawClient(self.base, token, ctx)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.raw.close()
        await self.session.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()

    def cpu_seconds(self) -> float:
        """User + system CPU the server process has used so far (load-independent cost)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def request(self, method: str, path: str, *, body: Any = None,
                      ctype: str = "application/json", params: dict[str, str] | None = None,
                      ok: tuple[int, ...] = (200, 201)) -> bytes:
        data = body if isinstance(body, bytes) else (
            json.dumps(body).encode() if body is not None else None)
        async with self.session.request(method, self.base + path, data=data, params=params,
                                        headers={"Content-Type": ctype}) as resp:
            raw = await resp.read()
            if resp.status not in ok:
                raise RuntimeError(f"{method} {path}: {resp.status} {raw[:300]!r}")
            return raw

    async def namespace(self, name: str) -> None:
        await self.request("POST", "/api/v1/namespaces", body={"metadata": {"name": name}})
        # without controllers nobody makes the default ServiceAccount pods are admitted with
        await self.request("POST", f"/api/v1/namespaces/{name}/serviceaccounts",
                           body={"metadata": {"name": "default"}}, ok=(201, 409))

    async def create_pods(self, ns: str, n: int, *, concurrency: int, start: int = 0) -> float:
        path = f"/api/v1/namespaces/{ns}/pods"
        # One encoding, the name spliced in: the client's own CPU stays off the figures.
        template = json.dumps(_pod(_NAME)).encode().split(_NAME.encode())
        return await ops_per_second(
            lambda i: self.raw.post(path, f"p{start + i:06d}".encode().join(template)), n,
            concurrency=concurrency)


async def _list_ms(server: Server, ns: str, *, repeat: int) -> float:
    path = f"/api/v1/namespaces/{ns}/pods"
    return median(await latencies_ms(lambda: server.request("GET", path), repeat=repeat))


async def _fanout(server: Server, *, watchers: int, writes: int) -> list[float]:
    await server.namespace("fan")
    path = "/api/v1/namespaces/fan/configmaps"
    created = json.loads(await server.request("POST", path, body={
        "metadata": {"name": "tick"}, "data": {"i": "-1"}}))
    rv = created["metadata"]["resourceVersion"]

    def index_of(event: dict[str, Any]) -> int | None:
        return int(event["object"]["data"]["i"]) if event.get("type") == "MODIFIED" else None

    async def write(i: int) -> None:
        await server.request("PATCH", f"{path}/tick", body={"data": {"i": str(i)}},
                             ctype="application/merge-patch+json")

    return await fanout_delays_ms(watchers=watchers, open_watch=lambda: server.raw.watch(path, rv),
                                  write=write, index_of=index_of, writes=writes)


async def run_store(store: str, args: argparse.Namespace) -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix=f"bench-api-{store}-") as tmp:
        async with Server(store, Path(tmp), concurrency=args.concurrency) as server:
            await server.namespace("seq")
            await server.namespace("conc")
            cpu = server.cpu_seconds()
            out["seq"] = await server.create_pods("seq", args.n, concurrency=1)
            out["seq_cpu"] = (server.cpu_seconds() - cpu) / args.n * 1e6
            cpu, mine = server.cpu_seconds(), time.process_time()
            out["conc"] = await server.create_pods("conc", args.n_concurrent,
                                                   concurrency=args.concurrency)
            out["conc_cpu"] = (server.cpu_seconds() - cpu) / args.n_concurrent * 1e6
            out["client_cpu"] = (time.process_time() - mine) / args.n_concurrent * 1e6
            for size in (1_000, 10_000):
                ns = f"l{size}"
                await server.namespace(ns)
                await server.create_pods(ns, size, concurrency=args.concurrency)
                out[f"list{size}"] = await _list_ms(server, ns, repeat=args.list_repeat)
            cpu = server.cpu_seconds()
            delays = await _fanout(server, watchers=args.watchers, writes=args.writes)
            out["fan_cpu"] = (server.cpu_seconds() - cpu) / (args.writes + 1) * 1e3
            out["fan50"], out["fan99"] = median(delays), percentile(delays, 99)
    return out


async def _main(args: argparse.Namespace) -> str:
    results = {s: await run_store(s, args) for s in args.stores}
    rows = [("seq", "pod creates/s, sequential"),
            ("seq_cpu", "  server CPU us per create"),
            ("conc", f"pod creates/s, {args.concurrency} clients"),
            ("conc_cpu", "  server CPU us per create"),
            ("client_cpu", "  client CPU us per create"),
            ("list1000", "list 1,000 pods ms (median)"),
            ("list10000", "list 10,000 pods ms (median)"),
            ("fan50", f"write->{args.watchers} watchers ms p50"),
            ("fan99", f"write->{args.watchers} watchers ms p99"),
            ("fan_cpu", "  server CPU ms per write (PATCH + fan-out)")]
    metrics = [Metric(label, "", {s: results[s][key] for s in args.stores})
               for key, label in rows]
    return side_by_side(metrics, args.stores, anchor=args.stores[0],
                        title=f"knet API over HTTPS (knet control subprocess, pid {os.getpid()} "
                        "is the client)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench api", description=DESCRIPTION)
    p.add_argument("--stores", nargs="+",
                   default=["memory", "memory+rbacoff", "sqlite", "sqlite+controllers"],
                   choices=["memory", "sqlite", "sqlite+controllers", "memory+controllers",
                            "memory+rbacoff", "sqlite+rbacoff"],
                   help="the first is the anchor; +controllers runs knet's controllers too; "
                   "+rbacoff authorizes every authenticated user instead of Node,RBAC")
    p.add_argument("-n", type=int, default=1000, help="sequential creates")
    p.add_argument("--n-concurrent", type=int, default=3000, help="concurrent creates")
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--watchers", type=int, default=100)
    p.add_argument("--writes", type=int, default=100)
    p.add_argument("--list-repeat", type=int, default=5)
    args = p.parse_args(argv)
    import uvloop
    print(uvloop.run(_main(args)))
    return 0
