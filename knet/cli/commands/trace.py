"""`knet trace FROM TO`: one real request from a pod, shown hop by hop with its packets."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from knet.cluster.state import DEFAULT_STATE_DIR


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("trace", help="send one request from a pod and show every hop",
                       description="Send one real request from pod FROM to TO (svc/NAME:PORT, "
                       "pod/NAME:PORT, or a DNS name[:PORT]) while capturing on every "
                       "interface of the path; print the hops (client eth0, node cni0, proxy "
                       "with the chosen endpoint and why, underlay, backend) with the packets "
                       "seen at each. A broken path says where and why.")
    p.add_argument("source", metavar="FROM", help="client pod (NAME or NS/NAME)")
    p.add_argument("target", metavar="TO")
    p.add_argument("-n", "--namespace", default="default", help="namespace of FROM")
    p.add_argument("--no-http", action="store_true", help="TCP connect only, no GET /")
    p.add_argument("--pcap", type=Path, default=None, metavar="DIR",
                   help="keep a pcap per captured interface in DIR")
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from knet.flows.cluster import ClusterView
    from knet.flows.trace import run_trace
    from knet.flows.traceview import render

    view = asyncio.run(ClusterView.load(args.state_dir))
    trace = run_trace(view, args.source, args.target, namespace=args.namespace,
                      http=not args.no_http, pcap_dir=args.pcap)
    print(render(trace, view.name_of))
    return 1 if trace.broken else 0
