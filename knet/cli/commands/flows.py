"""`knet flows`: the proxies' flow records and the DNS query log, merged in time order."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from knet.cluster.state import DEFAULT_STATE_DIR
from knet.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("flows", help="flow records of every node's proxy and the cluster DNS",
                       description="Who talked to which service, which backend the proxy "
                       "picked and why, bytes, duration and verdict; DNS queries with their "
                       "answers. Merged from every node in time order.")
    for flag, what in (("--pod", "either side is this pod (NAME or NS/NAME)"),
                       ("--from-pod", "the client is this pod"),
                       ("--to-pod", "the backend is this pod"),
                       ("--service", "through this service (NAME or NS/NAME)"),
                       ("--namespace", "a pod or service in this namespace"),
                       ("--node", "recorded on this node"),
                       ("--verdict", "FORWARDED, REFUSED, DROPPED (kube-proxy's DROP; NetworkPolicy), REJECTED, ERROR, TIMEOUT (DNS: NOERROR, NXDOMAIN...)"),
                       ("--protocol", "tcp, udp, http or dns")):
        p.add_argument(flag, default="", help=what)
    p.add_argument("--since", default="", help="an age (30s, 5m, 2h) or epoch seconds")
    p.add_argument("--last", type=int, default=0, metavar="N", help="only the last N records")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new records")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text",
                   help="json: one object per line with every field")
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from knet.flows.records import FlowFilter
    from knet.proxy.flows import parse_since

    if args.last < 0:
        raise UsageError(f"--last {args.last}: give a positive number of records")
    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    flt = FlowFilter(pod=args.pod, from_pod=args.from_pod, to_pod=args.to_pod,
                     service=args.service, namespace=args.namespace, node=args.node,
                     verdict=args.verdict, protocol=args.protocol, since=since)
    return asyncio.run(_main(args, flt))


def _emit(f: dict[str, object], output: str) -> None:
    from knet.flows.records import format_flow

    print(json.dumps(f) if output == "json" else format_flow(f), flush=True)


async def _main(args: argparse.Namespace, flt: object) -> int:
    from knet.flows import records
    from knet.flows.cluster import ClusterView

    view = await ClusterView.load(args.state_dir)
    errors: list[str] = []
    for f in await records.snapshot(view, flt=flt, last=args.last or None,  # type: ignore[arg-type]
                                    errors=errors):
        _emit(f, args.output)
    for e in errors:
        print(f"knet flows: {e}", file=sys.stderr)
    if not args.follow:
        return 0
    try:
        async for f in records.follow(view, flt=flt,  # type: ignore[arg-type]
                                      errors=lambda e: print(f"knet flows: {e}",
                                                             file=sys.stderr)):
            _emit(f, args.output)
    except asyncio.CancelledError:
        pass
    return 0
