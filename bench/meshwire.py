"""The meshed HTTP hop with mTLS on and off, on loopback (part of `python -m bench mesh`).

One process serves the mesh's client side (the L7 path, `HttpListener`, with a meshed pod's
`PodGuard`), another the server side (`Inbound`, the mTLS terminator in front of the
workload, as the endpoint node's proxy), a plain uvloop HTTP server in a third is the
workload; wrk (1 thread, 16
connections, keep-alive) is the client. Rows: wrk straight to the workload (direct), through
the L7 path with mTLS off (the endpoint is not meshed: plaintext hop) and on (a TLS 1.3 hop
to the server side, the workload's identity checked). The upstream TLS connections are
pooled, as the proxy pools them, so the cost measured is per request, not per handshake.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BACKEND = r'''
import asyncio, sys, uvloop
R = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
class H(asyncio.Protocol):
    def connection_made(self, t): self.t = t
    def data_received(self, d):
        n = d.count(b"\r\n\r\n")
        if n: self.t.write(R * n)
async def main():
    await asyncio.get_running_loop().create_server(H, sys.argv[1], int(sys.argv[2]),
                                                   backlog=1024)
    await asyncio.Event().wait()
uvloop.run(main())
'''

PROXY_IP, SERVER_IP, BACKEND_PORT, PROXY_PORT = "127.0.0.71", "127.0.0.72", 9080, 8080


def _wrk(url: str, seconds: float, conns: int = 16) -> tuple[float, float, float]:
    """(req/s, p50 ms, p99 ms) from wrk --latency."""
    secs = max(1, round(seconds))  # wrk takes whole seconds
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{secs}s", "--latency", url],
                         capture_output=True, text=True, timeout=seconds + 30,
                         check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        assert m, out
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
    return rps, pct("50"), pct("99")


def _web() -> Any:
    from knet.mesh.guard import Workload
    return Workload("bench", "web", SERVER_IP, "node-1", "web", {"app": "web"}, True)


async def _serve_inbound(ca_dir: Path) -> None:
    """The server side's proxy process: the workload's cert and the mTLS listener."""
    from control.api.ca import ClusterCA
    from knet.mesh.certs import LocalSigner, WorkloadCert, issue
    from knet.mesh.guard import HBONE_PORT, Security
    from knet.mesh.inbound import Inbound
    from knet.proxy.flows import FlowRing
    from knet.proxy.sockets import SocketMaker

    server = WorkloadCert("bench/web")
    await issue(LocalSigner(ClusterCA.load(ca_dir), {"bench/web": "web"}), server)
    web, ring, sockets = _web(), FlowRing(), SocketMaker(None)
    sec = Security({SERVER_IP: web})
    await asyncio.get_running_loop().create_server(
        lambda: Inbound(node="node-2", workload=web, world=lambda: sec, sockets=sockets,
                        ring=ring, identity=server.identity),
        SERVER_IP, HBONE_PORT, ssl=server.server, reuse_address=True, backlog=1024)
    await asyncio.Event().wait()


async def _serve_and_measure(ca_dir: Path, seconds: float, rounds: int) -> list[list[Any]]:
    from control.api.ca import ClusterCA
    from knet.mesh.certs import LocalSigner, WorkloadCert, issue
    from knet.mesh.guard import PodGuard, Security
    from knet.proxy.balancer import Endpoint, LoadBalancer, SystemClock
    from knet.proxy.config import ServicePort
    from knet.proxy.flows import FlowRing
    from knet.proxy.http import HttpListener
    from knet.proxy.sockets import SocketMaker
    from knet.proxy.tcp import ProxyContext

    client = WorkloadCert("bench/client")
    await issue(LocalSigner(ClusterCA.load(ca_dir), {"bench/client": "client"}), client)
    meshed = Security({SERVER_IP: _web()})
    world = {"sec": meshed}
    balancer = LoadBalancer(clock=SystemClock())
    sp = ServicePort("bench", "web", "http", PROXY_IP, PROXY_PORT, "TCP", app_protocol="http",
                     endpoints=(Endpoint(SERVER_IP, BACKEND_PORT, "bench/web"),))
    balancer.update(sp.key, sp.endpoints, affinity_seconds=None)
    guard = PodGuard(lambda: world["sec"], client)
    ctx = ProxyContext(node="node-1", balancer=balancer, ring=FlowRing(),
                       sockets=SocketMaker(None), guard=guard)
    listener = HttpListener(ctx, sp, ip=PROXY_IP, port=PROXY_PORT)
    await listener.start()
    rows: dict[str, list[tuple[float, float, float]]] = {}
    proxied = f"http://{PROXY_IP}:{PROXY_PORT}/"
    try:
        for _ in range(rounds):  # interleaved: the machine is shared
            for name, url, sec in (
                    ("direct", f"http://{SERVER_IP}:{BACKEND_PORT}/", None),
                    ("L7, no mesh", proxied, None),
                    ("mtls off", proxied, Security()),
                    ("mtls on", proxied, meshed)):
                ctx.guard = listener.pool.guard = None if sec is None else guard
                world["sec"] = sec or Security()
                listener.pool.close()   # no connection of the other mode is reused
                rows.setdefault(name, []).append(await asyncio.to_thread(_wrk, url, seconds))
                if name != "L7, no mesh":   # unloaded latency: one connection
                    rows.setdefault(f"{name}, c1", []).append(
                        await asyncio.to_thread(_wrk, url, seconds / 2, 1))
    finally:
        await listener.close()
    out = []
    for name, samples in rows.items():
        samples.sort()
        rps, p50, p99 = samples[len(samples) // 2]
        out.append([name, rps, p50, p99])
    return out


def run(seconds: float = 5.0, rounds: int = 3) -> list[list[Any]]:
    """Three processes: the workload, the server side's proxy, this one (the client side's
    proxy, and wrk's driver)."""
    import uvloop

    from control.api.ca import ClusterCA

    ca_dir = Path(tempfile.mkdtemp(prefix="knet-bench-mesh-"))
    ClusterCA.ensure(ca_dir)
    procs = [subprocess.Popen([sys.executable, "-c", BACKEND, SERVER_IP, str(BACKEND_PORT)]),
             subprocess.Popen([sys.executable, "-m", "bench.meshwire", "--serve-inbound",
                               str(ca_dir)])]
    try:
        time.sleep(1.5)
        return uvloop.run(_serve_and_measure(ca_dir, seconds, rounds))
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
        shutil.rmtree(ca_dir, ignore_errors=True)


def report(rows: list[list[Any]]) -> str:
    by = {r[0]: r for r in rows}
    lines = [f"{'path':<16} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8}"]
    lines += [f"{r[0]:<16} {r[1]:>10,.0f} {r[2]:>8.3f} {r[3]:>8.3f}" for r in rows]
    on, off = by["mtls on"], by["mtls off"]
    on1, off1, direct1 = by["mtls on, c1"], by["mtls off, c1"], by["direct, c1"]
    lines.append(f"mTLS on / off: {on[1] / off[1]:.2f}x req/s at 16 connections; p50 added "
                 f"by mTLS {on[2] - off[2]:+.3f} ms at 16 connections, {on1[2] - off1[2]:+.3f} "
                 f"ms at 1; the L7 hop itself vs direct {off1[2] - direct1[2]:+.3f} ms at 1")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve-inbound"]:
        import uvloop
        uvloop.run(_serve_inbound(Path(sys.argv[2])))
    else:
        print(report(run()))
