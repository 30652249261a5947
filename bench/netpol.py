"""`python -m bench netpol`: what NetworkPolicy costs (root, inside `knet sandbox`).

One node built by the real dataplane with a client and a server pod on its bridge. Part 1:
for 10 / 100 / 1,000 policies (each selecting the server, allowing a port range from a pod
selector that matches the client), the time to compile the model, render the node's table
and program it in ONE nftables transaction — then "enforced" is checked by a real probe
(the client allowed, then one more policy change that drops it, measured until the probe
fails). Part 2: pod-to-pod TCP with 0 vs 100 policies on the server: new connections/s (each
SYN walks the policy chain), 1-byte round trips/s and MB/s on one connection (established:
accepted before any policy rule).
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
import threading
import time
from typing import Any

from bench.common import Cell, table

NAME = "netpol"
DESCRIPTION = "NetworkPolicy programming time (10/100/1000 policies) and L4 cost with 0 vs 100"


def _policies(n: int, *, allow_client: bool = True) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        peer = {"podSelector": {"matchLabels": {"role": "client" if allow_client else "none"}}}
        out.append({"metadata": {"namespace": "default", "name": f"p{i}"}, "spec": {
            "podSelector": {"matchLabels": {"role": "server"}},
            "ingress": [{"from": [peer], "ports": [
                {"port": 5000 + i % 1000, "endPort": 5000 + i % 1000 + 10, "protocol": "TCP"},
                {"port": 7000, "protocol": "TCP"}]}]}})
    return out


def _server(netns: str, port: int) -> socket.socket:
    from knet.dataplane.nsutil import in_netns

    with in_netns(netns):
        srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(512)

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=_echo, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return srv


def _echo(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(1 << 16):
            if len(data) < 16:
                conn.sendall(data)


def _l4(netns: str, ip: str, port: int, seconds: float = 2.0) -> tuple[float, float, float]:
    from knet.dataplane.nsutil import in_netns

    def sock() -> socket.socket:
        with in_netns(netns):
            return socket.socket()

    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        s = sock()
        s.connect((ip, port))
        s.close()
        n += 1
    conns = n / seconds
    s = sock()
    s.connect((ip, port))
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        s.sendall(b"x")
        s.recv(16)
        n += 1
    rtts = n / seconds
    s.close()
    s = sock()
    s.connect((ip, port))
    chunk, sent, end = b"\0" * (1 << 16), 0, time.monotonic() + seconds
    while time.monotonic() < end:
        s.sendall(chunk)
        sent += len(chunk)
    s.close()
    return conns, rtts, sent / seconds / 1e6


async def _main() -> None:
    from knet.dataplane.base import NodeSpec
    from knet.dataplane.netlink import NetlinkDataplane
    from knet.dataplane.nft import LibNft
    from knet.policy.model import PodInfo, compile_model
    from knet.policy.nftrules import render
    from knet.policy.probe import connect

    with tempfile.TemporaryDirectory() as tmp:
        dp, nft = NetlinkDataplane(tmp), LibNft()
        try:
            await dp.ensure_host()
            await dp.ensure_node(NodeSpec.default(1))
            cnet = await dp.ensure_pod("node-1", "default/client")
            snet = await dp.ensure_pod("node-1", "default/server")
            pods = [PodInfo("default", "client", cnet.ip, "node-1", {"role": "client"}),
                    PodInfo("default", "server", snet.ip, "node-1", {"role": "server"})]
            srv = _server(snet.netns, 7000)
            rows: list[list[Cell]] = []
            for n in (10, 100, 1000):
                t0 = time.perf_counter()
                model = compile_model(_policies(n), pods, [])
                cmds = render(model, "node-1")
                t1 = time.perf_counter()
                await nft.apply("knet-node-1", cmds)
                t2 = time.perf_counter()
                assert connect(cnet.netns, snet.ip, 7000, "tcp", 1.0), "allowed probe failed"
                # one more change (the client no longer allowed): apply -> a probe fails
                t3 = time.perf_counter()
                await nft.apply("knet-node-1", render(compile_model(
                    _policies(n, allow_client=False), pods, []), "node-1"))
                while connect(cnet.netns, snet.ip, 7000, "tcp", 0.05):
                    pass
                t4 = time.perf_counter()
                rows.append([f"{n} policies", round((t1 - t0) * 1000, 1),
                             round((t2 - t1) * 1000, 1), round((t4 - t3) * 1000, 1), len(cmds)])
            print(table(["", "compile+render ms", "transaction ms", "change->enforced ms",
                         "nft commands"], rows, value_col=1, title="policy programming"))
            rows = []
            for n in (0, 100):
                await nft.apply("knet-node-1", render(compile_model(_policies(n), pods, []),
                                                      "node-1"))
                conns, rtts, mbs = _l4(cnet.netns, snet.ip, 7000)
                rows.append([f"{n} policies", round(conns), round(rtts), round(mbs)])
            print(table(["", "new conns/s", "round trips/s", "MB/s"], rows, value_col=1,
                        title="pod to pod TCP, same node"))
            srv.close()
        finally:
            nft.close()
            await dp.cleanup()
            await dp.close()


def main(argv: list[str] | None = None) -> int:
    asyncio.run(_main())
    return 0
