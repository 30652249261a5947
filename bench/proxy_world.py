"""The world `python -m bench proxy` measures in: namespaces, servers and proxies.

A node netns (pod bridge cni0, service device knet-svc holding the VIPs), a client pod and
a server pod on it. The server pod runs iperf3, a 1-byte TCP/UDP echo (uvloop) and nginx as
the HTTP server; the node runs HAProxy (tcp mode), nginx `stream`, an nftables DNAT VIP,
knet's proxy (with and without the flow recorder, and with the client's source IP
preserved), knet's nftables mode (NftProxier: kube-proxy's table, conntrack flow records
on) and a plain aiohttp reverse proxy, each with one worker. `World` starts them and
stops every process it started, by pid.
Run as `python -m bench.proxy_world --serve-knet on|off` / `--serve-aiohttp` it is one of
those proxy processes.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from typing import Any

NODE, CLIENT, SERVER = "kb-node", "kb-client", "kb-server"
GW, CLIENT_IP, SERVER_IP = "10.244.1.1", "10.244.1.2", "10.244.1.3"
IPERF, ECHO, HTTP, UDP = 5201, 7000, 80, 7001
VIPS = {"dnat": "10.96.0.30", "knet": "10.96.0.10", "knet-noflows": "10.96.0.12",
        "knet-http": "10.96.0.11", "haproxy": "10.96.0.20", "nginx": "10.96.0.21",
        "aiohttp": "10.96.0.22", "knet-srcip": "10.96.0.13", "knet-http-srcip": "10.96.0.14",
        "knet-nft": "10.96.0.15"}
NOT_LOCAL = ("dnat", "knet-nft")  # VIPs the kernel DNATs: not addresses of the node

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
    for key, vip in VIPS.items():
        if key not in NOT_LOCAL:
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
    ct status dnat ct original ip daddr {vip} masquerade
  }}
}}
"""


def haproxy_cfg() -> str:
    vip = VIPS["haproxy"]
    parts = ["global\n  nbthread 1\n  maxconn 4000\n",
             ("defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n"
              "  timeout server 60s\n")]
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


def transparent(on: bool, state_dir: str) -> None:
    """The node's reply path for transparent sockets (knet/dataplane/transparent.py), made
    only while the source-IP rows are measured: every other row runs without it, as today."""
    import asyncio

    from knet.dataplane.nft import LibNft
    from knet.dataplane.transparent import NetlinkPolicyRoutes, Transparent

    async def run() -> None:
        nft = LibNft()
        try:
            t = Transparent(state_dir, nft=nft, routes=NetlinkPolicyRoutes())
            await (t.ensure("bench", NODE, skip="10.96.0.0/12") if on else t.remove("bench"))
        finally:
            nft.close()
    asyncio.run(run())


def service_objs(name: str, ip: str, ports: list[tuple[int, str]],
                 app: str | None) -> list[dict[str, Any]]:
    """A Service and its EndpointSlice (the server pod) in wire form, as informers give them."""
    specs = [{"name": f"p{p}", "port": p, "protocol": proto,
              **({"appProtocol": app} if app else {})} for p, proto in ports]
    sl = {"kind": "EndpointSlice", "addressType": "IPv4",
          "metadata": {"name": name, "namespace": "bench",
                       "labels": {"kubernetes.io/service-name": name}},
          "ports": [{"name": s["name"], "port": s["port"], "protocol": s["protocol"]}
                    for s in specs],
          "endpoints": [{"addresses": [SERVER_IP], "conditions": {"ready": True},
                         "targetRef": {"kind": "Pod", "namespace": "bench", "name": "server"}}]}
    return [{"kind": "Service", "metadata": {"name": name, "namespace": "bench"},
             "spec": {"clusterIP": ip, "ports": specs}}, sl]


def serve_knet_nft() -> None:
    """knet's nftables mode (run as `python -m bench.proxy_world --serve-knet nft`): the
    NftProxier programs kube-proxy's table in the node netns and records flows from
    conntrack, as `knet proxy --proxy-mode nftables` does; then it only waits."""
    import asyncio
    import signal

    import uvloop

    from knet.dataplane.nft import LibNft
    from knet.proxy.flows import FlowRing
    from knet.proxy.nftproxier import NftProxier

    async def main() -> None:
        p = NftProxier("node-1", nft=LibNft(), netns=NODE, flow_ring=FlowRing(),
                       close_nft=True)
        for o in service_objs("nft", VIPS["knet-nft"],
                              [(IPERF, "TCP"), (ECHO, "TCP"), (HTTP, "TCP"), (UDP, "UDP")], None):
            (p.on_service_add if o["kind"] == "Service" else p.on_endpointslice_add)(o)
        p.on_service_synced()
        p.on_endpointslice_synced()
        p.start_flows()
        await asyncio.sleep(0.1)
        await p.wait_applied()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await p.stop()

    uvloop.run(main())


def serve_knet(flows: bool, srcip: bool = False) -> None:
    """The knet proxy process (run as `python -m bench.proxy --serve-knet on|off|srcip`;
    srcip: flows on, the client's source IP preserved)."""
    import asyncio

    import uvloop

    from knet.proxy.flows import FlowRing
    from knet.proxy.proxier import Proxier

    vip = VIPS["knet-srcip" if srcip else "knet" if flows else "knet-noflows"]

    async def main() -> None:
        p = Proxier("node-1", netns=NODE, flow_ring=FlowRing(), udp_idle_timeout=1.0)
        p.ctx.record = flows
        if srcip:
            from knet.proxy.source import SourcePolicy
            p.ctx.source = SourcePolicy(f"{GW}/24", node_ips={GW})
        if flows:  # as the node proxy runs: golden metrics from every record
            from knet.mesh.metrics import MeshMetrics
            p.ring.sinks.append(MeshMetrics().observe)
        objs = service_objs("l4", vip, [(IPERF, "TCP"), (ECHO, "TCP"), (HTTP, "TCP"), (UDP, "UDP")],
                   None)
        if flows:
            objs += service_objs("l7", VIPS["knet-http-srcip" if srcip else "knet-http"],
                                 [(HTTP, "TCP")], "http")
        for o in objs:
            (p.on_service_add if o["kind"] == "Service" else p.on_endpointslice_add)(o)
        p.on_service_synced()
        p.on_endpointslice_synced()
        await p.wait_applied()
        await asyncio.Event().wait()

    uvloop.run(main())


def serve_aiohttp() -> None:
    """The anchor for the L7 path: a plain aiohttp reverse proxy (server + ClientSession)."""
    import uvloop
    from aiohttp import ClientSession, TCPConnector, web

    async def main() -> None:
        session = ClientSession(connector=TCPConnector(limit=0))

        async def handle(request: web.Request) -> web.Response:
            async with session.request(request.method, f"http://{SERVER_IP}:{HTTP}"
                                       f"{request.rel_url}", data=await request.read()) as r:
                return web.Response(body=await r.read(), status=r.status,
                                    content_type=r.content_type)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, VIPS["aiohttp"], HTTP, backlog=1024).start()
        await asyncio.Event().wait()

    import asyncio
    uvloop.run(main())


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
        self.cmds: list[list[str]] = []

    def spawn(self, ns: str, *cmd: str) -> None:
        self.cmds.append(list(cmd))
        with open(os.path.join(self.tmp, f"{len(self.procs)}.log"), "wb") as log:
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
        for flows in ("on", "off", "srcip"):
            self.spawn(NODE, sys.executable, "-m", "bench.proxy_world", "--serve-knet", flows)
        self.spawn(NODE, sys.executable, "-m", "bench.proxy_world", "--serve-knet", "nft")
        self.spawn(NODE, sys.executable, "-m", "bench.proxy_world", "--serve-aiohttp")
        for host, port in [(SERVER_IP, IPERF), (SERVER_IP, ECHO), (SERVER_IP, HTTP),
                           (VIPS["haproxy"], ECHO), (VIPS["nginx"], ECHO),
                           (VIPS["knet"], ECHO), (VIPS["knet-noflows"], ECHO),
                           (VIPS["knet-http"], HTTP), (VIPS["dnat"], ECHO),
                           (VIPS["knet-srcip"], ECHO), (VIPS["knet-http-srcip"], HTTP),
                           (VIPS["aiohttp"], HTTP), (VIPS["knet-nft"], ECHO)]:
            try:
                wait_port(host, port)
            except RuntimeError:
                for i, p in enumerate(self.procs):
                    with open(os.path.join(self.tmp, f"{i}.log"), "rb") as f:
                        tail = f.read()[-400:].decode(errors="replace").strip()
                    print(f"bench: {' '.join(self.cmds[i])[:70]}: "
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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy_world")
    parser.add_argument("--serve-knet", choices=["on", "off", "srcip", "nft"])
    parser.add_argument("--serve-aiohttp", action="store_true")
    args = parser.parse_args(argv)
    if args.serve_knet == "nft":
        serve_knet_nft()
    elif args.serve_knet:
        serve_knet(args.serve_knet != "off", srcip=args.serve_knet == "srcip")
    elif args.serve_aiohttp:
        serve_aiohttp()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
