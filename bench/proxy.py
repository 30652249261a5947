"""`python -m bench proxy`: knet's proxy beside HAProxy, nginx stream and kernel DNAT.

Two pods on one node (see proxy_world.py). The same clients (iperf3 -t N, a 1-byte
ping-pong on one connection, wrk, a UDP ping-pong) go, in one run: straight to the pod IP;
through an nftables DNAT VIP (the physical limit of a kernel path); through knet's proxy
(L4 with and without the flow recorder, and the L7 HTTP path); through knet's nftables mode
(kube-proxy's table, flows from conntrack); HAProxy (tcp mode), nginx
`stream` and a plain aiohttp reverse proxy (the L7 anchor). Rounds are interleaved and
medians shown, the machine being shared. Re-execs itself inside `knet sandbox` unless
KNET_SANDBOX=1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

from bench.proxy_world import (
    CLIENT,
    ECHO,
    HTTP,
    IPERF,
    SERVER_IP,
    UDP,
    VIPS,
    World,
    build_topology,
    in_ns,
    sh,
    transparent,
)

NAME = "proxy"
DESCRIPTION = ("TCP Gbit/s, TCP round trips/s, HTTP req/s p50/p99, UDP round trips/s through "
               "knet's proxy vs direct, nftables DNAT, HAProxy, nginx stream")

PING_PONG = r'''
import socket, sys, time
host, port, secs, kind = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
if kind == "tcp":
    s = socket.create_connection((host, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    send, recv = s.send, s.recv
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, port)); s.settimeout(0.2)
    send, recv = s.send, s.recv
n = lost = 0
start = time.perf_counter(); end = start + secs
while True:
    send(b"x")
    try:
        recv(16)
    except socket.timeout:
        lost += 1
    n += 1
    if n % 512 == 0 and time.perf_counter() > end:
        break
print(n / (time.perf_counter() - start), lost)
'''


@dataclass
class Row:
    name: str
    gbits: float | None = None
    rts: float | None = None
    rps: float | None = None
    p50: str = "-"
    p99: str = "-"
    udp: float | None = None
    notes: list[str] = field(default_factory=list)


def iperf(host: str, secs: float) -> float:
    out = sh(*in_ns(CLIENT, "iperf3", "-c", host, "-p", str(IPERF), "-t", f"{secs:g}", "-J"))
    return float(json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"]) / 1e9


def ping_pong(host: str, port: int, secs: float, kind: str) -> tuple[float, int]:
    out = sh(*in_ns(CLIENT, sys.executable, "-c", PING_PONG, host, str(port), f"{secs:g}",
                    kind))
    rate, lost = out.stdout.split()
    return float(rate), int(lost)


def wrk(host: str, secs: float) -> tuple[float, str, str]:
    out = sh(*in_ns(CLIENT, "wrk", "-t1", "-c32", f"-d{secs:g}s", "--latency",
                    f"http://{host}:{HTTP}/")).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"\s50%\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    p99 = re.search(r"\s99%\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    return rps, p50, p99


def measure(name: str, host: str, secs: float, *, tcp: bool = True, http: bool = True,
            udp: bool = True) -> Row:
    row = Row(name)
    if tcp:
        row.gbits = iperf(host, secs)
        row.rts, _ = ping_pong(host, ECHO, secs, "tcp")
    if http:
        row.rps, row.p50, row.p99 = wrk(host, secs)
    if udp:
        row.udp, lost = ping_pong(host, UDP, secs, "udp")
        if lost:
            row.notes.append(f"{lost} UDP timeouts")
    print(f"  measured {name}", file=sys.stderr, flush=True)
    return row


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table(rows: list[Row]) -> str:
    head = (f"{'path':<22} {'TCP Gbit/s':>10} {'TCP rt/s':>9} {'HTTP req/s':>10} "
            f"{'p50':>8} {'p99':>8} {'UDP rt/s':>9}")
    out = [head, "-" * len(head)]
    for r in rows:
        out.append(f"{r.name:<22} {_fmt(r.gbits, '.2f'):>10} {_fmt(r.rts, ',.0f'):>9} "
                   f"{_fmt(r.rps, ',.0f'):>10} {r.p50:>8} {r.p99:>8} {_fmt(r.udp, ',.0f'):>9}"
                   + (f"  ({'; '.join(r.notes)})" if r.notes else ""))
    return "\n".join(out)


def ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:.2f}x"


def ratios(rows: list[Row]) -> str:
    by = {r.name: r for r in rows}
    knet = by.get("knet L4", Row("knet L4"))
    out = ["knet L4 / other (>1: knet ahead)",
           f"{'vs':<22} {'TCP Gbit/s':>10} {'TCP rt/s':>9} {'HTTP req/s':>10} {'UDP rt/s':>9}"]
    for other in ("direct pod IP", "nftables DNAT", "HAProxy tcp", "nginx stream",
                  "knet L4 flows off"):
        o = by.get(other)
        if o is None:
            continue
        out.append(f"{other:<22} {ratio(knet.gbits, o.gbits):>10} {ratio(knet.rts, o.rts):>9} "
                   f"{ratio(knet.rps, o.rps):>10} {ratio(knet.udp, o.udp):>9}")
    pairs = [(by[a], by[b]) for a, b in SOURCE_IP_PAIRS if a in by and b in by]
    if pairs:
        out.append("source IP preserved / today's userspace (goal: cost < 10%, i.e. >= 0.90x)")
        for kept, today in pairs:
            out.append(f"{kept.name:<22} {ratio(kept.gbits, today.gbits):>10} "
                       f"{ratio(kept.rts, today.rts):>9} {ratio(kept.rps, today.rps):>10} "
                       f"{ratio(kept.udp, today.udp):>9}")
    nft, direct_row = by.get("knet nftables mode"), by.get("direct pod IP")
    if nft and direct_row:
        def x(a: float | None, b: float | None) -> str:
            return "-" if not a or not b else f"{a / b:.2f}x"
        out.append(f"knet nftables mode / direct: TCP Gbit/s {x(nft.gbits, direct_row.gbits)}, "
                   f"TCP rt/s {x(nft.rts, direct_row.rts)}, HTTP req/s "
                   f"{x(nft.rps, direct_row.rps)}, UDP rt/s {x(nft.udp, direct_row.udp)} "
                   "(goal >= 0.9x on throughput and round trips)")
    http = by.get("knet L7 http")
    aio = by.get("aiohttp rev. proxy")
    direct = by["direct pod IP"].rps if "direct pod IP" in by else None
    if http and http.rps and direct:
        out.append(f"knet L7 http path: {http.rps:,.0f} req/s = "
                   f"{http.rps / direct:.2f}x direct"
                   + (f", {http.rps / aio.rps:.1f}x the aiohttp reverse proxy"
                      if aio and aio.rps else "") + " (goal >= 10,000 req/s)")
    return "\n".join(out)


PLAN = [("direct pod IP", SERVER_IP, {}), ("nftables DNAT", VIPS["dnat"], {}),
        ("knet L4", VIPS["knet"], {}), ("knet L4 flows off", VIPS["knet-noflows"], {}),
        ("knet nftables mode", VIPS["knet-nft"], {}),
        ("knet L7 http", VIPS["knet-http"], {"tcp": False, "udp": False}),
        ("aiohttp rev. proxy", VIPS["aiohttp"], {"tcp": False, "udp": False}),
        ("HAProxy tcp", VIPS["haproxy"], {"udp": False}), ("nginx stream", VIPS["nginx"], {}),
        ("knet L4 source IP", VIPS["knet-srcip"], {"srcip": True}),
        ("knet L7 http src IP", VIPS["knet-http-srcip"], {"tcp": False, "udp": False,
                                                          "srcip": True})]
SOURCE_IP_PAIRS = [("knet L4 source IP", "knet L4"), ("knet L7 http src IP", "knet L7 http")]


def _latency_us(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)$", text)
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)] if m else 0.0


def _median_row(rows: list[Row]) -> Row:
    """Per figure, the median over the rounds (the machine is shared: rounds differ)."""
    def med(values: list[float | None]) -> float | None:
        vs = sorted(v for v in values if v is not None)
        return vs[len(vs) // 2] if vs else None
    out = Row(rows[0].name, gbits=med([r.gbits for r in rows]), rts=med([r.rts for r in rows]),
              rps=med([r.rps for r in rows]), udp=med([r.udp for r in rows]))
    for attr in ("p50", "p99"):
        ranked = sorted((r for r in rows if getattr(r, attr) != "-"),
                        key=lambda r: _latency_us(getattr(r, attr)))
        if ranked:
            setattr(out, attr, getattr(ranked[len(ranked) // 2], attr))
    out.notes = [n for r in rows for n in r.notes]
    return out


def run(secs: float, rounds: int, only: list[str] | None = None) -> list[Row]:
    """Each round measures every path once, in turn, so slow moments hit all alike."""
    plan = [p for p in PLAN if not only or p[0] in only]
    build_topology()
    with tempfile.TemporaryDirectory(prefix="knet-bench-proxy-") as tmp:
        world = World(tmp)
        try:
            world.start()
            results: dict[str, list[Row]] = {name: [] for name, _, _ in plan}
            for _ in range(rounds):
                for name, host, opts in plan:
                    opts = dict(opts)
                    srcip = bool(opts.pop("srcip", False))
                    if srcip:   # the reply path only while the source-IP rows run
                        transparent(True, tmp)
                    try:
                        results[name].append(measure(name, host, secs, **opts))
                    finally:
                        if srcip:
                            transparent(False, tmp)
            return [_median_row(rs) for rs in results.values()]
        finally:
            world.stop()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench proxy", description=DESCRIPTION)
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each step")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians are shown")
    parser.add_argument("--only", default="", help="comma-separated path names to measure "
                        "(e.g. 'direct pod IP,knet L7 http'); default all")
    args = parser.parse_args(argv)
    only = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(only) - {name for name, _, _ in PLAN}
    if unknown:
        parser.error(f"--only: unknown path(s) {sorted(unknown)}; "
                     f"known: {[name for name, _, _ in PLAN]}")
    if os.environ.get("KNET_SANDBOX") != "1":
        cmd = [sys.executable, "-m", "knet.cli.main", "sandbox", "--", sys.executable, "-m",
               "bench.proxy", *argv]
        return subprocess.run(cmd, check=False).returncode
    rows = run(args.seconds, args.rounds, only)
    print(f"one node, client pod -> server pod; medians of {args.rounds} rounds of "
          f"{args.seconds:g} s steps; each proxy with one worker/thread; iperf3, a 1-byte "
          "ping-pong (one connection), wrk -t1 -c32 against nginx in the server pod; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(table(rows))
    print()
    print(ratios(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
