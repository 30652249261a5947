"""The meshed HTTP hop with mTLS on and off, on loopback (part of `python -m bench mesh`).

One process serves the mesh's client side (the L7 path, `HttpListener`, with a meshed pod's
`PodGuard`) and the server side (`Inbound`, the mTLS terminator in front of the workload);
a plain uvloop HTTP server in another process is the workload; wrk (1 thread, 16
connections, keep-alive) is the client. Rows: wrk straight to the workload (direct), through
the L7 path with mTLS off (the endpoint is not meshed: plaintext hop) and on (a TLS 1.3 hop
to the server side, the workload's identity checked). The upstream TLS connections are
pooled, as the proxy pools them, so the cost measured is per request, not per handshake.
"""

from __future__ import annotations

import asyncio
import re
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


def _wrk(url: str, seconds: float) -> tuple[float, float, float]:
    """(req/s, p50 ms, p99 ms) from wrk --latency."""
    out = subprocess.run(["wrk", "-t1", "-c16", f"-d{seconds:g}s", "--latency", url],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        assert m, out
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
    return rps, pct("50"), pct("99")


async def _serve_and_measure(seconds: float, rounds: int) -> list[list[Any]]:
    from control.api.ca import ClusterCA
    from knet.mesh.certs import LocalSigner, WorkloadCert, issue
    from knet.mesh.guard import HBONE_PORT, PodGuard, Security, Workload
    from knet.mesh.inbound import Inbound
    from knet.proxy.balancer import Endpoint, LoadBalancer, SystemClock
    from knet.proxy.config import ServicePort
    from knet.proxy.flows import FlowRing
    from knet.proxy.http import HttpListener
    from knet.proxy.sockets import SocketMaker
    from knet.proxy.tcp import ProxyContext

    loop = asyncio.get_running_loop()
    tmp = Path(tempfile.mkdtemp(prefix="knet-bench-mesh-"))
    ca = ClusterCA.ensure(tmp)
    signer = LocalSigner(ca, {"bench/client": "client", "bench/web": "web"})
    client, server = WorkloadCert("bench/client"), WorkloadCert("bench/web")
    for wc in (client, server):
        await issue(signer, wc)
    web = Workload("bench", "web", SERVER_IP, "node-1", "web", {"app": "web"}, True)
    meshed = Security({SERVER_IP: web})
    world = {"sec": meshed}
    ring, sockets = FlowRing(), SocketMaker(None)
    inbound = await loop.create_server(
        lambda: Inbound(node="node-1", workload=web, world=lambda: world["sec"],
                        sockets=sockets, ring=ring, identity=server.identity),
        SERVER_IP, HBONE_PORT, ssl=server.server, reuse_address=True, backlog=1024)
    balancer = LoadBalancer(clock=SystemClock())
    sp = ServicePort("bench", "web", "http", PROXY_IP, PROXY_PORT, "TCP", app_protocol="http",
                     endpoints=(Endpoint(SERVER_IP, BACKEND_PORT, "bench/web"),))
    balancer.update(sp.key, sp.endpoints, affinity_seconds=None)
    ctx = ProxyContext(node="node-1", balancer=balancer, ring=ring, sockets=sockets,
                       guard=PodGuard(lambda: world["sec"], client))
    listener = HttpListener(ctx, sp, ip=PROXY_IP, port=PROXY_PORT)
    await listener.start()
    rows: dict[str, list[tuple[float, float, float]]] = {
        "direct": [], "L7, no mesh": [], "mtls off": [], "mtls on": []}
    guard = ctx.guard
    try:
        for _ in range(rounds):  # interleaved: the machine is shared
            for name, url, sec in (
                    ("direct", f"http://{SERVER_IP}:{BACKEND_PORT}/", meshed),
                    ("L7, no mesh", f"http://{PROXY_IP}:{PROXY_PORT}/", None),
                    ("mtls off", f"http://{PROXY_IP}:{PROXY_PORT}/", Security()),
                    ("mtls on", f"http://{PROXY_IP}:{PROXY_PORT}/", meshed)):
                ctx.guard = listener.pool.guard = None if sec is None else guard
                world["sec"] = sec or Security()
                listener.pool.close()   # no connection of the other mode is reused
                rows[name].append(await asyncio.to_thread(_wrk, url, seconds))
    finally:
        await listener.close()
        inbound.close()
    out = []
    for name, samples in rows.items():
        samples.sort()
        rps, p50, p99 = samples[len(samples) // 2]
        out.append([name, rps, p50, p99])
    return out


def run(seconds: float = 5.0, rounds: int = 3) -> list[list[Any]]:
    backend = subprocess.Popen([sys.executable, "-c", BACKEND, SERVER_IP, str(BACKEND_PORT)])
    try:
        time.sleep(0.5)
        import uvloop
        return uvloop.run(_serve_and_measure(seconds, rounds))
    finally:
        backend.terminate()
        backend.wait(timeout=10)


def report(rows: list[list[Any]]) -> str:
    by = {r[0]: r for r in rows}
    lines = [f"{'path':<10} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8}"]
    lines += [f"{r[0]:<10} {r[1]:>10,.0f} {r[2]:>8.3f} {r[3]:>8.3f}" for r in rows]
    on, off, direct = by["mtls on"], by["mtls off"], by["direct"]
    lines.append(f"mTLS on / off: {on[1] / off[1]:.2f}x req/s; added p50 per hop "
                 f"{on[2] - off[2]:+.3f} ms (the mTLS hop), L7 hop vs direct "
                 f"{off[2] - direct[2]:+.3f} ms")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(run()))
