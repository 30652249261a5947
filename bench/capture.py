"""`python -m bench capture`: the packet rate `knet capture` keeps up with, beside tcpdump on
the same interface in the same run.

Two namespaces joined by a veth; a paced UDP sender (a separate process, bursts per
millisecond) sends R packets/s for S seconds from one to the other while `knet capture`'s
machinery (RawCapture + PcapWriter, `-w` to a file, BPF `udp`) and `tcpdump -w` both capture
on the receiving end. For each rate: packets sent, captured by each, written to the pcap,
and dropped (kernel counters for both: PACKET_STATISTICS for knet, tcpdump's own report;
for knet also frames still queued when it stopped). The sender is one Python process: on a
loaded machine it may not reach the target rate; "sent pkt/s" is what it achieved. knet's
socket has a 32 MB buffer, so bursts above its read rate are absorbed, then drained.
Drops are printed, never hidden. Re-execs itself inside `knet sandbox` unless
KNET_SANDBOX=1.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import Cell, table

NAME = "capture"
DESCRIPTION = ("packets/s knet capture -w keeps without loss vs tcpdump -w on the same veth, "
               "drops reported")

A, B = "kbcap-a", "kbcap-b"
A_IP, B_IP = "10.77.0.1", "10.77.0.2"

SENDER = r"""
import socket, sys, time
rate, secs, dst = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload = b"x" * 64
per_ms = max(1, rate // 1000)
sent, start = 0, time.monotonic()
while True:
    now = time.monotonic() - start
    if now >= secs:
        break
    due = int(now * rate)
    while sent < due:
        for _ in range(min(per_ms, due - sent)):
            try:
                s.sendto(payload, (dst, 9999))
                sent += 1
            except OSError:
                pass
    time.sleep(0.0002)
print(sent)
"""


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True)


def build() -> None:
    sh("ip", "netns", "add", A)
    sh("ip", "netns", "add", B)
    sh("ip", "-n", A, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", B)
    for ns, ip in ((A, A_IP), (B, B_IP)):
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")


def tcpdump_stats(text: str) -> tuple[int, int]:
    cap = re.search(r"(\d+) packets? captured", text)
    drop = re.search(r"(\d+) packets? dropped by kernel", text)
    return (int(cap.group(1)) if cap else 0, int(drop.group(1)) if drop else 0)


def one_rate(rate: int, secs: float, tmp: Path) -> list[Cell]:
    from knet.flows.cluster import Iface
    from knet.flows.session import capture

    td_file, kn_file = tmp / f"td-{rate}.pcap", tmp / f"kn-{rate}.pcap"
    td = subprocess.Popen(["ip", "netns", "exec", B, "tcpdump", "-i", "eth0", "-n", "-B",
                           "32768", "-w", str(td_file), "udp"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    result: dict[str, object] = {}

    def knet_side() -> None:
        result["r"] = capture(Iface(B, "eth0", "bench eth0"), bpf="udp", duration=secs + 1.5,
                              write=kn_file)

    t = threading.Thread(target=knet_side)
    t.start()
    time.sleep(1.0)                    # both capturing before the first packet
    sent = int(subprocess.run(["ip", "netns", "exec", A, sys.executable, "-c", SENDER,
                               str(rate), str(secs), B_IP], capture_output=True, text=True,
                              check=True).stdout)
    t.join()
    time.sleep(0.2)
    td.send_signal(signal.SIGINT)
    _, err = td.communicate(timeout=10)
    td_cap, td_drop = tcpdump_stats(err)
    r = result["r"]
    kn_written = (kn_file.stat().st_size - 24) // (16 + 42 + 64)
    return [rate, sent, round(sent / secs), r.received, kn_written, r.dropped + r.unread, td_cap, td_drop,  # type: ignore[attr-defined]
            round(100 * r.received / sent, 1) if sent else None,  # type: ignore[attr-defined]
            round(100 * td_cap / sent, 1) if sent else None]


def drain_rate(n: int, tmp: Path) -> tuple[int, float, int]:
    """knet's own read+write ceiling: n packets queued in a big socket buffer before the reader
    starts, then timed until all are in the pcap file. (packets, packets/s, drops)"""
    from knet.flows.capture import RawCapture
    from knet.flows.cluster import Iface
    from knet.flows.pcap import PcapWriter

    cap = RawCapture(Iface(B, "eth0", "bench eth0"), program=None, rcvbuf=512 << 20)
    cap.open()
    subprocess.run(["ip", "netns", "exec", A, sys.executable, "-c", SENDER, str(n), "1.0",
                    B_IP], capture_output=True, check=True)
    writer = PcapWriter(tmp / "drain.pcap")
    start = time.perf_counter()
    cap.start(lambda f: writer.write(f.ts_ns, f.data))
    last, idle_since = -1, time.perf_counter()
    while time.perf_counter() - idle_since < 0.3:   # until nothing new for 0.3 s
        if cap.stats.received != last:
            last, idle_since = cap.stats.received, time.perf_counter()
        time.sleep(0.01)
    elapsed = idle_since - start
    cap.stop()
    writer.commit()
    return cap.stats.received, cap.stats.received / elapsed, cap.stats.dropped


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench capture", description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="sending time per rate")
    parser.add_argument("--rates", default="10000,50000,100000",
                        help="packets/s to try, comma separated")
    parser.add_argument("--drain", type=int, default=100_000,
                        help="packets queued for the read-ceiling measurement")
    args = parser.parse_args(argv)
    if os.environ.get("KNET_SANDBOX") != "1":
        cmd = [sys.executable, "-m", "knet.cli.main", "sandbox", "--", sys.executable, "-m",
               "bench", "capture", *argv]
        return subprocess.run(cmd, check=False).returncode
    build()
    rows = []
    with tempfile.TemporaryDirectory(prefix="knet-bench-capture-") as tmp:
        for rate in (int(r) for r in args.rates.split(",")):
            rows.append(one_rate(rate, args.seconds, Path(tmp)))
        got, ceiling, drops = drain_rate(args.drain, Path(tmp))
    print(f"UDP 64-byte payloads over a veth, {args.seconds:g} s per rate, both tools writing "
          f"a pcap; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(table(["target pkt/s", "sent", "sent pkt/s", "knet got", "knet in pcap",
                 "knet drops+unread", "tcpdump got", "tcpdump drops", "knet %", "tcpdump %"],
                rows, value_col=3, anchor_row=0, ratio_title="knet got / first row"))
    print("goal: >= 50,000 packets/s written to pcap without loss (knet % = 100, drops 0)")
    print(f"knet's read+pcap ceiling: {got:,} packets queued first (at the sender's max rate), "
          f"then read and written at {ceiling:,.0f} packets/s ({drops} dropped)")
    return 0
