"""DNS queries/s: knet's cluster DNS against dnsmasq answering the same name, in one run.

Both servers run on loopback as separate processes (knet: `python -m knet.dns --objects`,
one Service `web.default.svc.cluster.local` -> 10.96.0.20; dnsmasq: `--address=/that name/
10.96.0.20`), started and stopped by pid. The load is `dnsperf` (Debian package) if present,
else a uvloop generator in this process that keeps `--inflight` UDP queries outstanding.
The systems alternate for `--rounds` rounds of `--seconds` each; the table shows medians and
the ratio to dnsmasq.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import Cell, table

NAME = "dns"
DESCRIPTION = "DNS queries/s through knet's cluster DNS vs dnsmasq answering the same name"

QNAME = "web.default.svc.cluster.local"
ANSWER = "10.96.0.20"
OBJECTS = f"""apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec: {{clusterIP: {ANSWER}, ports: [{{name: http, port: 80}}]}}
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t.bind(("127.0.0.1", port))
        return int(port)


def _query(port: int, qid: int = 0x1234) -> bytes | None:
    packet = qid.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    packet += b"".join(bytes([len(p)]) + p.encode() for p in QNAME.split(".")) + b"\x00\x00\x01\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        try:
            s.sendto(packet, ("127.0.0.1", port))
            return s.recv(4096)
        except OSError:
            return None


@contextmanager
def _server(name: str, argv: list[str], port: int) -> Iterator[int]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while (resp := _query(port)) is None or socket.inet_aton(ANSWER) not in resp:
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr and proc.poll() is not None else ""
                raise SystemExit(f"bench dns: {name} did not answer {QNAME} on port {port}: "
                                 f"{err.strip() or 'timed out'}")
            time.sleep(0.05)
        yield proc.pid
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _dnsperf(port: int, seconds: float, inflight: int, datafile: Path) -> tuple[float, float]:
    out = subprocess.run(["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(datafile),
                          "-l", str(seconds), "-c", "1", "-T", "1", "-q", str(inflight)],
                         check=False, capture_output=True, text=True, timeout=seconds + 30).stdout
    qps = re.search(r"Queries per second:\s+([\d.]+)", out)
    lat = re.search(r"Average Latency \(s\):\s+([\d.]+)", out)
    if not qps:
        raise SystemExit(f"bench dns: could not read dnsperf's output:\n{out}")
    return float(qps.group(1)), float(lat.group(1)) * 1000 if lat else float("nan")


class _Load(asyncio.DatagramProtocol):
    """Keeps `inflight` queries outstanding on one socket; counts answers."""

    def __init__(self, inflight: int) -> None:
        self.inflight, self.answered = inflight, 0
        self.sent_at: dict[int, float] = {}
        self.latencies: list[float] = []
        self.template = _query_packet()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]
        for i in range(self.inflight):
            self._send(i)

    def _send(self, qid: int) -> None:
        self.sent_at[qid] = time.perf_counter()
        self.transport.sendto(qid.to_bytes(2, "big") + self.template[2:])

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        qid = int.from_bytes(data[:2], "big")
        sent = self.sent_at.pop(qid, None)
        if sent is None:
            return
        self.answered += 1
        if self.answered % 64 == 0:
            self.latencies.append(time.perf_counter() - sent)
        self._send((qid + self.inflight) & 0xFFFF)

    def resend_lost(self, older_than: float) -> None:
        """A lost datagram must not shrink the window: re-send what waited too long."""
        now = time.perf_counter()
        for qid, sent in list(self.sent_at.items()):
            if now - sent > older_than:
                del self.sent_at[qid]
                self._send((qid + self.inflight) & 0xFFFF)


def _query_packet() -> bytes:
    return (b"\x00\x00\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
            + b"".join(bytes([len(p)]) + p.encode() for p in QNAME.split("."))
            + b"\x00\x00\x01\x00\x01")


async def _pyload(port: int, seconds: float, inflight: int) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    load = _Load(inflight)
    transport, _ = await loop.create_datagram_endpoint(lambda: load,
                                                       remote_addr=("127.0.0.1", port))
    start = time.perf_counter()
    while (left := seconds - (time.perf_counter() - start)) > 0:
        await asyncio.sleep(min(0.2, left))
        load.resend_lost(0.5)
    n, elapsed = load.answered, time.perf_counter() - start
    transport.close()
    lat = statistics.median(load.latencies) * 1000 if load.latencies else float("nan")
    return n / elapsed, lat


def _measure(port: int, args: argparse.Namespace, datafile: Path) -> tuple[float, float]:
    if args.load == "dnsperf":
        return _dnsperf(port, args.seconds, args.inflight, datafile)
    import uvloop
    return uvloop.run(_pyload(port, args.seconds, args.inflight))


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench dns", description=DESCRIPTION)
    p.add_argument("--seconds", type=float, default=5.0, help="per measurement (default 5)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    p.add_argument("--inflight", type=int, default=100, help="outstanding queries (100)")
    p.add_argument("--load", choices=["dnsperf", "python"],
                   default="dnsperf" if shutil.which("dnsperf") else "python")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = _parse(argv)
    dnsmasq = shutil.which("dnsmasq") or next(
        (p for p in ("/usr/sbin/dnsmasq", "/sbin/dnsmasq") if os.path.exists(p)), None)
    if dnsmasq is None:
        print("bench dns: dnsmasq is not installed (apt-get install dnsmasq; scripts/install.sh "
              "installs it)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="knet-bench-dns-") as tmp:
        objects, datafile = Path(tmp) / "objects.yaml", Path(tmp) / "queries.txt"
        objects.write_text(OBJECTS)
        datafile.write_text(f"{QNAME} A\n")
        knet_port, dnsmasq_port = _free_port(), _free_port()
        systems = {
            "dnsmasq": ([dnsmasq, "--no-daemon", "--no-resolv", "--no-hosts",
                         "--conf-file=/dev/null", "--pid-file=", "--user=root",
                         f"--address=/{QNAME}/{ANSWER}", "--port", str(dnsmasq_port),
                         "--listen-address", "127.0.0.1", "--bind-interfaces"], dnsmasq_port),
            "knet dns": ([sys.executable, "-m", "knet.dns", "--objects", str(objects),
                          "--listen", f"127.0.0.1:{knet_port}", "--log-level", "WARNING"],
                         knet_port),
        }
        results: dict[str, list[tuple[float, float]]] = {s: [] for s in systems}
        with _server("dnsmasq", *systems["dnsmasq"]), _server("knet dns", *systems["knet dns"]):
            for _ in range(args.rounds):
                for name, (_, port) in systems.items():
                    results[name].append(_measure(port, args, datafile))
    rows: list[list[Cell]] = []
    for name, samples in results.items():
        qps = statistics.median(q for q, _ in samples)
        lat = statistics.median(v for _, v in samples)
        rows.append([name, round(qps), lat, ", ".join(f"{q:,.0f}" for q, _ in samples)])
    print(table(["server", "queries/s (median)", "latency ms", "each round"], rows,
                value_col=1, anchor_row=0, ratio_title="vs dnsmasq",
                title=f"DNS A {QNAME} over UDP on loopback, load: {args.load}, "
                      f"{args.inflight} in flight, {args.rounds}x{args.seconds:g}s"))
    return 0
