"""`knet proxy --node NAME`: the node's userspace kube-proxy, its own process per node (`knet up`
starts one next to each agent, as kube-proxy runs beside the kubelet). Watches Services and
EndpointSlices over the API and serves them in the node's netns; ClusterIPs are put on the
node's service device through the dataplane's records (`--state-dir`), or must already be
there (`--no-addresses`). Flow records are served at GET /flows over a unix socket
(`--flows-socket`, in a 0700 directory, mode 0600: only root on the host reaches it, no
credential needed) and/or on loopback TCP (`--flows-port`). Prometheus metrics (Istio's names,
knet/mesh/metrics.py) are served at GET /metrics on the same socket and on
NODE_IP:10249 inside the node's netns (`--metrics-port`, kube-proxy's metrics port), which the
host side reaches over the underlay. Backends see the client pod's address (transparent
upstream sockets, knet/proxy/preserve.py) unless `--no-preserve-source-ip`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from control.addresses import POD_CIDR
from knet.errors import UsageError
from knet.proxy.balancer import ALGORITHMS

if TYPE_CHECKING:
    from aiohttp import web

    from knet.proxy.agent import NodeProxy

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("proxy", help="run a node's kube-proxy on its own",
                       description="Serve the cluster's Services on one node: a listener per "
                       "ClusterIP:port and NodePort, round-robin or ClientIP affinity, flow "
                       "records on --flows-port.")
    p.add_argument("--node", required=True, help="node name, e.g. node-1")
    p.add_argument("--server", help="API server URL, e.g. http://127.0.0.1:6443")
    p.add_argument("--token", help="bearer token for --server")
    p.add_argument("--kubeconfig", type=Path, help="use this kubeconfig instead of --server")
    p.add_argument("--netns", help="the node's network namespace (default knet-NODE; "
                   "'-' for this one)")
    p.add_argument("--node-ip", action="append", default=[], metavar="IP",
                   help="node IP for NodePorts (repeatable)")
    p.add_argument("--state-dir", type=Path, default=Path("/var/lib/knet"),
                   help="knet state dir (the dataplane's records live under it)")
    p.add_argument("--no-addresses", action="store_true",
                   help="do not add ClusterIPs to the node (they are already there)")
    p.add_argument("--proxy-mode", choices=["userspace", "nftables"], default="userspace",
                   help="userspace (default): listeners in this process; nftables: kube-proxy's "
                   "nftables mode, the kernel DNATs (table ip kube-proxy in the node's netns)")
    p.add_argument("--cluster-cidr", default=POD_CIDR,
                   help="pod CIDR: nftables mode masquerades Service traffic from outside it")
    p.add_argument("--udp-idle-timeout", type=float, default=0.25, metavar="SECONDS")
    p.add_argument("--algorithm", default="round-robin",
                   choices=ALGORITHMS,
                   help="balancing algorithm for Services without the annotation "
                   "knet.dev/proxy-algorithm")
    p.add_argument("--http-retries", type=int, default=2)
    p.add_argument("--http-timeout", type=float, default=15.0, metavar="SECONDS")
    p.add_argument("--flows-port", type=int, default=0,
                   help="serve GET /flows on 127.0.0.1:PORT (0: off)")
    p.add_argument("--flows-socket", type=Path, default=None, metavar="PATH",
                   help="serve GET /flows on this unix socket (its directory is made 0700)")
    p.add_argument("--no-preserve-source-ip", dest="preserve_source_ip",
                   action="store_false",
                   help="backends see the node's address, not the client pod's (default: "
                   "kept, with transparent sockets, as kube-proxy keeps it)")
    p.add_argument("--metrics-port", type=int, default=10249,
                   help="serve GET /metrics on the first --node-ip:PORT in the node's netns "
                   "(kube-proxy's metrics port; 0: off)")
    p.add_argument("--no-netpol", action="store_true",
                   help="do not enforce NetworkPolicies in the node's netns (knet/policy)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import uvloop

    if not args.kubeconfig and not args.server:
        raise UsageError("knet proxy: give --server URL [--token T] or --kubeconfig PATH")
    return uvloop.run(_main(args))


def _client(args: argparse.Namespace) -> object:
    try:
        from control.client import HttpClient
    except ImportError:  # pragma: no cover - the control package is part of knet
        raise UsageError("knet proxy: control.client.HttpClient is not available") from None
    if args.kubeconfig:
        return HttpClient.from_kubeconfig(args.kubeconfig)
    return HttpClient(args.server, token=args.token)


async def _main(args: argparse.Namespace) -> int:
    from aiohttp import web

    from knet.proxy.agent import start_node_proxy
    from knet.proxy.flows import FlowRing, flows_routes
    from knet.sharedinformers import SharedInformers

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    netns = None if args.netns == "-" else (args.netns or f"knet-{args.node}")
    client = _client(args)
    dataplane = routes = None
    if not args.no_addresses:
        from knet.dataplane.hostroutes import HostRoutes
        routes = HostRoutes(args.state_dir / "dataplane", args.node)  # LoadBalancer addresses
        if args.proxy_mode == "userspace":  # nftables mode DNATs: no ClusterIPs on knet-svc
            from knet.dataplane.netlink import NetlinkDataplane
            dataplane = NetlinkDataplane(args.state_dir / "dataplane")
    ring = FlowRing()
    runner = metrics = None
    source = None
    if dataplane is not None and netns is not None:   # source IP preservation (preserve.py)
        from knet.proxy.preserve import setup_source_ip
        source = await setup_source_ip(node=args.node, netns=netns,
                                       state_dir=args.state_dir / "dataplane",
                                       enabled=args.preserve_source_ip)
    mode_options: dict[str, Any] = (
        {"cluster_cidr": args.cluster_cidr, "routes": routes} if args.proxy_mode == "nftables" else
        {"udp_idle_timeout": args.udp_idle_timeout, "http_retries": args.http_retries,
         "http_timeout": args.http_timeout, "algorithm": args.algorithm, "routes": routes,
         "source_ip": source})
    informers = SharedInformers()   # one watch per resource for all of this process's parts
    proxy = await start_node_proxy(
        client=client, node_name=args.node, netns=netns, node_ips=args.node_ip,  # type: ignore[arg-type]
        dataplane=dataplane, flow_ring=ring, proxy_mode=args.proxy_mode, informer=informers,
        **mode_options)
    netpol = None
    if not args.no_netpol:   # NetworkPolicy: its own loop in this process (knet/policy/enforcer.py)
        from knet.policy.enforcer import start_enforcer
        netpol = await start_enforcer(client, node=args.node, netns=netns,  # type: ignore[arg-type]
                                      record=ring.record, informer=informers)
    try:
        if args.flows_port or args.flows_socket:   # after the start: the socket says "up"
            app = web.Application()
            app.add_routes(flows_routes(ring))
            app.add_routes(proxy.metrics_routes())
            runner = web.AppRunner(app, handle_signals=False, handler_cancellation=True,
                                   shutdown_timeout=2)
            await runner.setup()
            if args.flows_port:
                await web.TCPSite(runner, "127.0.0.1", args.flows_port).start()
            if args.flows_socket:
                await _serve_unix(runner, args.flows_socket)
        metrics = await _serve_metrics(proxy, args)
        await stop.wait()
    finally:
        if netpol is not None:
            await netpol.stop()
        await proxy.stop()
        if runner is not None:
            await runner.cleanup()
        if metrics is not None:
            await metrics.cleanup()
        if args.flows_socket:
            args.flows_socket.unlink(missing_ok=True)
        if dataplane is not None:
            await dataplane.close()
        await client.close()  # type: ignore[attr-defined]
    return 0


async def _serve_unix(runner: object, path: Path) -> None:
    """GET /flows on a unix socket at path: its directory 0700 (made if missing), the socket
    0600; a stale socket from a killed proxy is replaced."""
    from aiohttp import web

    if len(str(path).encode()) > 107:
        raise UsageError(f"knet proxy: --flows-socket {path} is longer than a unix socket path "
                         "may be (107 bytes); use a shorter --state-dir")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    path.unlink(missing_ok=True)
    await web.UnixSite(runner, str(path)).start()  # type: ignore[arg-type]
    os.chmod(path, 0o600)
    log.info("flows: serving GET /flows on unix socket %s", path)


async def _serve_metrics(proxy: NodeProxy, args: argparse.Namespace) -> web.AppRunner | None:
    """GET /metrics on NODE_IP:--metrics-port in the node's netns (the socket made there by
    the proxier's SocketMaker); None when off or when no node IP is given."""
    from aiohttp import web

    if not args.metrics_port or not args.node_ip:
        return None
    ip = args.node_ip[0]
    try:
        sockets = getattr(proxy.proxier, "sockets", None) or proxy.proxier.ctx.sockets  # type: ignore[union-attr]
        sock = sockets.listener(ip, args.metrics_port)
    except OSError as exc:
        log.error("metrics: cannot listen on %s:%d (%s); GET /metrics stays on the flows "
                  "socket only (give --metrics-port another port)", ip, args.metrics_port,
                  exc.strerror or exc)
        return None
    app = web.Application()
    app.add_routes(proxy.metrics_routes())
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    log.info("metrics: serving GET /metrics on %s:%d", ip, args.metrics_port)
    return runner
