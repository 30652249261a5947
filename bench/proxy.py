"""`python -m bench proxy`: knet's proxy beside HAProxy, nginx stream and kernel DNAT.

One node netns (pod bridge cni0, service device knet-svc), a client pod and a server pod on
it, like two pods on one node. The server pod runs iperf3, a 1-byte TCP echo, a UDP echo
(both uvloop) and nginx as a fast HTTP server. The same clients (iperf3 -t N, a 1-byte
ping-pong, wrk, a UDP ping-pong) then go, in one run: straight to the pod IP; through an
nftables DNAT VIP (the physical limit of a kernel path); through knet's proxy (L4, with and
without the flow recorder; and the L7 HTTP path); HAProxy (tcp mode) and nginx `stream`,
each proxy given one worker/thread like knet's one event loop. Re-execs itself inside
`knet sandbox` unless KNET_SANDBOX=1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

NAME = "proxy"
DESCRIPTION = ("TCP Gbit/s, TCP round trips/s, HTTP req/s p50/p99, UDP round trips/s through "
               "knet's proxy vs direct, nftables DNAT, HAProxy, nginx stream")

NODE, CLIENT, SERVER = "kb-node", "kb-client", "kb-server"
GW, CLIENT_IP, SERVER_IP = "10.244.1.1", "10.244.1.2", "10.244.1.3"
IPERF, ECHO, HTTP, UDP = 5201, 7000, 80, 7001
VIPS = {"dnat": "10.96.0.30", "knet": "10.96.0.10", "knet-noflows": "10.96.0.12",
        "knet-http": "10.96.0.11", "haproxy": "10.96.0.20", "nginx": "10.96.0.21"}

ECHO_SERVER = r'''
import asyncio, uvloop
class T(asyncio.Protocol):
    def connection_made(self, t): self.t = t
    def data_received(self, d): self.t.write(d)
class U(asyncio.DatagramProtocol):
    def connection_made(self, t): self.t = t
    def datagram_received(self, d, a): self.t.sendto(d, a)
async def main():
    loop = asyncio.get_running_loop()
    await loop.create_server(T, "0.0.0.0", 7000)
    await loop.create_datagram_endpoint(U, local_addr=("0.0.0.0", 7001))
    await asyncio.Event().wait()
uvloop.run(main())
'''

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


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=60)


def in_ns(ns: str, *cmd: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *cmd]


def build_topology() -> None:
    sh("ip", "netns", "add", NODE)
    for args in (("link", "set", "lo", "up"), ("link", "add", "cni0", "type", "bridge"),
                 ("addr", "add", f"{GW}/24", "dev", "cni0"), ("link", "set", "cni0", "up"),
                 ("link", "add", "knet-svc", "type", "bridge"),
                 ("link", "set", "knet-svc", "up")):
        sh("ip", "-n", NODE, *args)
    for vip in VIPS.values():
        if not vip.endswith(".30"):  # the DNAT VIP is not a local address
            sh("ip", "-n", NODE, "addr", "add", f"{vip}/32", "dev", "knet-svc")
    sh(*in_ns(NODE, "sysctl", "-qw", "net.ipv4.ip_forward=1"))
    for i, (ns, ip) in enumerate(((CLIENT, CLIENT_IP), (SERVER, SERVER_IP))):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", NODE, "link", "add", f"veth{i}", "type", "veth", "peer", "name",
           "eth0", "netns", ns)
        sh("ip", "-n", NODE, "link", "set", f"veth{i}", "master", "cni0", "up")
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", GW)


def nft_rules() -> str:
    vip = VIPS["dnat"]
    return f"""table ip kbench {{
  chain pre {{ type nat hook prerouting priority dstnat; policy accept;
    ip daddr {vip} tcp dport {{ {IPERF}, {ECHO}, {HTTP} }} dnat to {SERVER_IP}
    ip daddr {vip} udp dport {UDP} dnat to {SERVER_IP}
  }}
  chain post {{ type nat hook postrouting priority srcnat; policy accept;
    ct status dnat ip daddr {SERVER_IP} masquerade
  }}
}}
"""


def haproxy_cfg() -> str:
    vip = VIPS["haproxy"]
    parts = ["global\n  nbthread 1\n  maxconn 4000\n",
             "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n"
             "  timeout server 60s\n"]
    for port in (IPERF, ECHO, HTTP):
        parts.append(f"listen p{port}\n  bind {vip}:{port}\n  server s1 {SERVER_IP}:{port}\n")
    return "".join(parts)


def nginx_stream_cfg(tmp: str) -> str:
    vip = VIPS["nginx"]
    servers = "".join(f"  server {{ listen {vip}:{p}; proxy_pass {SERVER_IP}:{p}; }}\n"
                      for p in (IPERF, ECHO, HTTP))
    servers += (f"  server {{ listen {vip}:{UDP} udp; proxy_pass {SERVER_IP}:{UDP}; "
                "proxy_responses 1; proxy_timeout 1s; }\n")
    return (f"load_module /usr/lib/nginx/modules/ngx_stream_module.so;\nuser root;\n"
            f"worker_processes 1;\ndaemon off;\npid {tmp}/ngx-stream.pid;\n"
            f"error_log {tmp}/ngx-stream.err;\nevents {{ worker_connections 8192; }}\n"
            f"stream {{\n{servers}}}\n")


def nginx_http_cfg(tmp: str) -> str:
    temps = "".join(f"  {k}_temp_path {tmp}/{k};\n"
                    for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"user root;\nworker_processes 1;\ndaemon off;\npid {tmp}/ngx-http.pid;\n"
            f"error_log {tmp}/ngx-http.err;\nevents {{ worker_connections 8192; }}\n"
            f"http {{\n  access_log off;\n{temps}  keepalive_requests 1000000;\n"
            f"  server {{ listen {SERVER_IP}:{HTTP}; location / {{ return 200 \"ok\\n\"; }} }}\n"
            "}\n")


def serve_knet(flows: bool) -> None:
    """The knet proxy process (run as `python -m bench.proxy --serve-knet on|off`)."""
    import asyncio

    import uvloop

    from knet.proxy.flows import FlowRing
    from knet.proxy.proxier import Proxier

    vip = VIPS["knet" if flows else "knet-noflows"]

    def svc(name: str, ip: str, ports: list[tuple[int, str]], app: str | None) -> list[dict]:
        specs = [{"name": f"p{p}", "port": p, "protocol": proto,
                  **({"appProtocol": app} if app else {})} for p, proto in ports]
        sl = {"kind": "EndpointSlice", "addressType": "IPv4",
              "metadata": {"name": name, "namespace": "bench",
                           "labels": {"kubernetes.io/service-name": name}},
              "ports": [{"name": s["name"], "port": s["port"], "protocol": s["protocol"]}
                        for s in specs],
              "endpoints": [{"addresses": [SERVER_IP], "conditions": {"ready": True},
                             "targetRef": {"kind": "Pod", "namespace": "bench",
                                           "name": "server"}}]}
        return [{"kind": "Service", "metadata": {"name": name, "namespace": "bench"},
                 "spec": {"clusterIP": ip, "ports": specs}}, sl]

    async def main() -> None:
        p = Proxier("node-1", netns=NODE, flow_ring=FlowRing(), udp_idle_timeout=1.0)
        p.ctx.record = flows
        objs = svc("l4", vip, [(IPERF, "TCP"), (ECHO, "TCP"), (HTTP, "TCP"), (UDP, "UDP")],
                   None)
        if flows:
            objs += svc("l7", VIPS["knet-http"], [(HTTP, "TCP")], "http")
        for o in objs:
            (p.on_service_add if o["kind"] == "Service" else p.on_endpointslice_add)(o)
        p.on_service_synced()
        p.on_endpointslice_synced()
        await p.wait_applied()
        await asyncio.Event().wait()

    uvloop.run(main())


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


def wait_port(host: str, port: int, timeout: float = 10) -> None:
    from knet.dataplane import nsutil

    end = time.monotonic() + timeout
    while True:
        with nsutil.in_netns(CLIENT):
            s = socket.socket()
        s.settimeout(0.5)
        try:
            s.connect((host, port))
            return
        except OSError:
            if time.monotonic() > end:
                raise RuntimeError(f"bench: nothing answers on {host}:{port}") from None
            time.sleep(0.05)
        finally:
            s.close()


class World:
    """Starts the servers and proxies; stops every process it started, by pid."""

    def __init__(self, tmp: str) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, ns: str, *cmd: str) -> None:
        log = open(os.path.join(self.tmp, f"{len(self.procs)}.log"), "wb")
        self.procs.append(subprocess.Popen(in_ns(ns, *cmd), stdout=log, stderr=log))

    def write(self, name: str, text: str) -> str:
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def start(self) -> None:
        t = self.tmp
        for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.makedirs(os.path.join(t, d), exist_ok=True)
        self.spawn(SERVER, "iperf3", "-s", "-p", str(IPERF))
        self.spawn(SERVER, sys.executable, "-c", ECHO_SERVER)
        self.spawn(SERVER, "nginx", "-c", self.write("http.conf", nginx_http_cfg(t)))
        self.spawn(NODE, "haproxy", "-db", "-f", self.write("haproxy.cfg", haproxy_cfg()))
        self.spawn(NODE, "nginx", "-c", self.write("stream.conf", nginx_stream_cfg(t)))
        sh(*in_ns(NODE, "nft", "-f", self.write("rules.nft", nft_rules())))
        for flows in ("on", "off"):
            self.spawn(NODE, sys.executable, "-m", "bench.proxy", "--serve-knet", flows)
        for host, port in [(SERVER_IP, IPERF), (SERVER_IP, ECHO), (SERVER_IP, HTTP),
                           (VIPS["haproxy"], ECHO), (VIPS["nginx"], ECHO),
                           (VIPS["knet"], ECHO), (VIPS["knet-noflows"], ECHO),
                           (VIPS["knet-http"], HTTP), (VIPS["dnat"], ECHO)]:
            try:
                wait_port(host, port)
            except RuntimeError:
                for i, p in enumerate(self.procs):
                    with open(os.path.join(self.tmp, f"{i}.log"), "rb") as f:
                        tail = f.read()[-400:].decode(errors="replace").strip()
                    print(f"bench: {' '.join(map(str, p.args[4:]))[:70]}: "
                          f"{'running' if p.poll() is None else f'exit {p.returncode}'}"
                          f"{': ' + tail if tail else ''}", file=sys.stderr)
                raise

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()


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


def ratios(rows: list[Row]) -> str:
    by = {r.name: r for r in rows}
    knet = by["knet L4"]
    out = ["knet L4 / other (>1: knet ahead)",
           f"{'vs':<22} {'TCP Gbit/s':>10} {'TCP rt/s':>9} {'HTTP req/s':>10} {'UDP rt/s':>9}"]
    for other in ("direct pod IP", "nftables DNAT", "HAProxy tcp", "nginx stream",
                  "knet L4 flows off"):
        o = by.get(other)
        if o is None:
            continue

        def ratio(a: float | None, b: float | None) -> str:
            return "-" if not a or not b else f"{a / b:.2f}x"
        out.append(f"{other:<22} {ratio(knet.gbits, o.gbits):>10} {ratio(knet.rts, o.rts):>9} "
                   f"{ratio(knet.rps, o.rps):>10} {ratio(knet.udp, o.udp):>9}")
    http = by.get("knet L7 http")
    if http and http.rps:
        out.append(f"knet L7 http path: {http.rps:,.0f} req/s = "
                   f"{http.rps / by['direct pod IP'].rps:.2f}x direct (goal >= 10,000 req/s)")
    return "\n".join(out)


def run(secs: float) -> list[Row]:
    build_topology()
    with tempfile.TemporaryDirectory(prefix="knet-bench-proxy-") as tmp:
        world = World(tmp)
        try:
            world.start()
            return [
                measure("direct pod IP", SERVER_IP, secs),
                measure("nftables DNAT", VIPS["dnat"], secs),
                measure("knet L4", VIPS["knet"], secs),
                measure("knet L4 flows off", VIPS["knet-noflows"], secs),
                measure("knet L7 http", VIPS["knet-http"], secs, tcp=False, udp=False),
                measure("HAProxy tcp", VIPS["haproxy"], secs, udp=False),
                measure("nginx stream", VIPS["nginx"], secs),
            ]
        finally:
            world.stop()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench proxy", description=DESCRIPTION)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each step")
    parser.add_argument("--serve-knet", choices=["on", "off"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_knet:
        serve_knet(args.serve_knet == "on")
        return 0
    if os.environ.get("KNET_SANDBOX") != "1":
        cmd = [sys.executable, "-m", "knet.cli.main", "sandbox", "--", sys.executable, "-m",
               "bench.proxy", *argv]
        return subprocess.run(cmd, check=False).returncode
    rows = run(args.seconds)
    print(f"one node, client pod -> server pod, {args.seconds:g} s per step, each proxy "
          "with one worker/thread; wrk -t1 -c32 against nginx in the server pod")
    print(table(rows))
    print()
    print(ratios(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
