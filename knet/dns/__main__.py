"""`python -m knet.dns`: the cluster DNS as a process (the `knet/dns` built-in image).

    python -m knet.dns --server URL --token T --listen 0.0.0.0:53
    python -m knet.dns --kubeconfig PATH --listen 127.0.0.1:5353 --upstream 10.0.0.2:53
    python -m knet.dns --objects objects.yaml --listen 127.0.0.1:5353   # static, no API

It watches Services and EndpointSlices (or serves a fixed file of them), answers once both
have synced, and exits 0 on SIGTERM/SIGINT. With --log-queries every query is logged as a
flow record line (what `kubectl logs` of the DNS pod shows); with --flows-listen the query
log is served as JSON at GET /flows (and /flows?follow=1) over mutual TLS (--flows-tls-dir:
tls.crt, tls.key and the cluster CA's ca.crt, as the kube-system Secret mounts them).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from knet.dns.records import ClusterRecords
from knet.dns.server import DnsServer

log = logging.getLogger("knet.dns")


def _hostport(text: str, default_port: int) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, default_port
    return host.strip("[]") or "0.0.0.0", int(port)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m knet.dns", description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--server", help="API server URL, e.g. http://172.18.0.1:6443")
    src.add_argument("--kubeconfig", help="kubeconfig file to read the server and token from")
    src.add_argument("--objects", help="YAML file of Services/EndpointSlices to serve (no API)")
    p.add_argument("--token", help="bearer token for --server")
    p.add_argument("--listen", default="0.0.0.0:53", help="ADDR:PORT (default 0.0.0.0:53)")
    p.add_argument("--cluster-domain", default="cluster.local")
    p.add_argument("--upstream", help="ADDR[:PORT] to forward names outside the cluster to")
    p.add_argument("--upstream-timeout", type=float, default=2.0)
    p.add_argument("--sync-timeout", type=float, default=60.0)
    p.add_argument("--log-queries", action="store_true", help="log every query")
    p.add_argument("--flows-listen", help="ADDR:PORT to serve the query log at GET /flows")
    p.add_argument("--flows-tls-dir", help="directory with tls.crt, tls.key and ca.crt for "
                   "--flows-listen (clients must present a certificate of that CA)")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def _load_objects(path: str, records: ClusterRecords) -> None:
    docs: list[Any] = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    items = [i for d in docs for i in (d.get("items", []) if d.get("kind", "").endswith("List")
                                       else [d])]
    for obj in items:
        if obj.get("kind") == "Service":
            records.on_service_add(obj)
        elif obj.get("kind") == "EndpointSlice":
            records.on_endpointslice_add(obj)
    records.on_service_synced()
    records.on_endpointslice_synced()


async def _log_queries(server: DnsServer) -> None:
    qlog = logging.getLogger("knet.dns.queries")
    async for flow in server.follow():
        qlog.info("%s", flow)


def _flows_tls(directory: str | None) -> ssl.SSLContext:
    from control.api.ca import server_context

    if not directory:
        raise ValueError("--flows-listen needs --flows-tls-dir (tls.crt, tls.key, ca.crt): the "
                         "query log is never served without mutual TLS")
    d = Path(directory)
    missing = [f for f in ("tls.crt", "tls.key", "ca.crt") if not (d / f).is_file()]
    if missing:
        raise ValueError(f"--flows-tls-dir {d}: {', '.join(missing)} missing; mount the "
                         "kube-system/coredns-flows-tls Secret there")
    return server_context(d / "tls.crt", d / "tls.key", client_ca=d / "ca.crt",
                          require_client=True)


async def run(args: argparse.Namespace) -> int:
    flows_tls = _flows_tls(args.flows_tls_dir) if args.flows_listen else None
    records = ClusterRecords(cluster_domain=args.cluster_domain)
    source, client = None, None
    if args.objects:
        _load_objects(args.objects, records)
    else:
        from control.client import HttpClient
        from knet.servicesource import ServiceSource
        client = (HttpClient.from_kubeconfig(args.kubeconfig) if args.kubeconfig
                  else HttpClient(args.server, token=args.token))
        source = ServiceSource(client, records)
        source.start()
        await source.wait_synced(args.sync_timeout)
    host, port = _hostport(args.listen, 53)
    upstream = _hostport(args.upstream, 53) if args.upstream else None
    server = DnsServer(records.snapshot, host=host, port=port, upstream=upstream,
                       upstream_timeout=args.upstream_timeout)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    follower = loop.create_task(_log_queries(server)) if args.log_queries else None
    flows = None
    if args.flows_listen and flows_tls is not None:
        from knet.dns.flowsapi import FlowsApi
        fhost, fport = _hostport(args.flows_listen, 9153)
        flows = FlowsApi(server, host=fhost, port=fport, tls=flows_tls)
        await flows.start()
    try:
        await stop.wait()
    finally:
        log.info("%s:%d: stopping", host, server.port)
        if follower is not None:
            follower.cancel()
        if flows is not None:
            await flows.stop()
        await server.stop()
        if source is not None:
            await source.stop()
        if client is not None:
            await client.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import uvloop
        return uvloop.run(run(args))
    except (TimeoutError, ValueError, ssl.SSLError) as exc:
        log.error("%s", exc)
        return 1
    except OSError as exc:
        log.error("%s: cannot listen (%s); is the port free and are you allowed to bind it?",
                  args.listen, exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
