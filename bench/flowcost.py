"""`python -m bench flowcost`: what the flow recorder costs the proxy.

Two Proxiers (knet.proxy, on uvloop) in one server process on loopback 127.x addresses (no
root, no sandbox), one with the recorder on (`ProxyContext.record`, as the agent runs it),
one with it off, in front of the same echo backend. A client process measures, against
each in turn (interleaved rounds, medians): new connections/s (connect, 1-byte echo, close:
one flow record each — the case recording costs most), 1-byte round trips/s on one
connection, and MB/s of bulk echo. The direct backend is the anchor row.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import socket
import statistics
import time
from multiprocessing.connection import Connection

from bench.common import Cell, table

NAME = "flowcost"
DESCRIPTION = "proxy conn/s, round trips/s, MB/s with the flow recorder on vs off (goal < 10%)"


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = transport

    def data_received(self, data: bytes) -> None:
        self.t.write(data)  # type: ignore[attr-defined]


def _svc(name: str, ip: str, backend: str) -> list[dict[str, object]]:
    return [{"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": name, "namespace": "default"},
             "spec": {"clusterIP": ip, "ports": [{"port": 80, "protocol": "TCP"}]}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "addressType": "IPv4", "ports": [{"port": 8080, "protocol": "TCP"}],
             "metadata": {"name": f"{name}-1", "namespace": "default",
                          "labels": {"kubernetes.io/service-name": name}},
             "endpoints": [{"addresses": [backend], "conditions": {"ready": True},
                            "targetRef": {"kind": "Pod", "namespace": "default",
                                          "name": "echo"}}]}]


def serve(net: str, pipe: Connection) -> None:
    import uvloop

    from knet.proxy.flows import FlowRing
    from knet.proxy.proxier import Proxier

    async def main() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_server(_Echo, net + "2", 8080)
        proxiers = []
        for i, record in ((10, True), (11, False)):
            p = Proxier(f"bench-{record}", flow_ring=FlowRing(size=10_000))
            p.ctx.record = record
            for o in _svc(f"s{i}", net + str(i), net + "2"):
                (p.on_service_add if o["kind"] == "Service" else p.on_endpointslice_add)(o)
            p.on_service_synced()
            p.on_endpointslice_synced()
            await p.wait_applied()
            proxiers.append(p)
        pipe.send("ready")
        await loop.run_in_executor(None, pipe.recv)
        pipe.send([len(p.ring) for p in proxiers])

    uvloop.run(main())


def conns_per_s(addr: tuple[str, int], secs: float) -> float:
    n, end = 0, time.monotonic() + secs
    while time.monotonic() < end:
        with socket.create_connection(addr, timeout=2) as s:
            s.sendall(b"x")
            s.recv(1)
        n += 1
    return n / secs


def round_trips_per_s(addr: tuple[str, int], secs: float) -> float:
    with socket.create_connection(addr, timeout=2) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        n, end = 0, time.monotonic() + secs
        while time.monotonic() < end:
            s.sendall(b"x")
            s.recv(1)
            n += 1
    return n / secs


def mbytes_per_s(addr: tuple[str, int], secs: float) -> float:
    chunk = b"x" * 65536
    with socket.create_connection(addr, timeout=2) as s:
        got, end = 0, time.monotonic() + secs
        while time.monotonic() < end:
            s.sendall(chunk)
            need = len(chunk)
            while need:
                data = s.recv(need)
                need -= len(data)
                got += len(data)
    return got / secs / 1e6


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench flowcost", description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0, help="length of each step")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians are shown")
    args = parser.parse_args(argv)
    net = f"127.{random.randint(20, 250)}.{random.randint(1, 250)}."
    ours, theirs = mp.Pipe()
    server = mp.get_context("spawn").Process(target=serve, args=(net, theirs), daemon=True)
    server.start()
    try:
        if not ours.poll(30):
            raise SystemExit("flowcost: the proxy process did not start within 30 s")
        ours.recv()
        targets = {"direct backend": (net + "2", 8080), "knet L4, recorder on": (net + "10", 80),
                   "knet L4, recorder off": (net + "11", 80)}
        steps = {"conn/s": conns_per_s, "round trips/s": round_trips_per_s,
                 "MB/s": mbytes_per_s}
        got: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for step, fn in steps.items():
                for name, addr in targets.items():
                    got.setdefault((name, step), []).append(fn(addr, args.seconds))
        ours.send("done")
        records = ours.recv() if ours.poll(10) else ["?", "?"]
    finally:
        server.terminate()
        server.join(5)
    rows: list[list[Cell]] = [[step, name, statistics.median(got[(name, step)])] for step in steps
            for name in targets]
    print(f"loopback, proxy and backend in one uvloop process, client in another; medians of "
          f"{args.rounds} rounds of {args.seconds:g} s; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs; flow records kept: on={records[0]}, off={records[1]}")
    print(table(["metric", "path", "value"], rows, value_col=2, anchor_row=1, group_col=0,
                ratio_title="vs recorder on"))
    for step in steps:
        on, off = (statistics.median(got[(n, step)]) for n in list(targets)[1:])
        print(f"{step}: recording costs {100 * (off - on) / off:+.1f}% (goal < 10%)")
    return 0
