"""`knet topo`: nodes, bridges, pods and services as a tree, or Graphviz dot / svg."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from knet.cluster.state import DEFAULT_STATE_DIR


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("topo", help="the cluster's topology: nodes, bridges, pods, services",
                       description="Nodes -> cni0 bridges -> pods with IPs, and services with "
                       "ClusterIPs and endpoints. --format dot|svg for a picture "
                       "(knet topo --format svg > topo.svg).")
    p.add_argument("--format", choices=["tree", "dot", "svg"], default="tree")
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from knet.flows import topo
    from knet.flows.cluster import ClusterView

    view = asyncio.run(ClusterView.load(args.state_dir))
    render = {"tree": topo.tree, "dot": topo.dot, "svg": topo.svg}[args.format]
    print(render(view), end="" if args.format != "tree" else "\n")
    return 0
