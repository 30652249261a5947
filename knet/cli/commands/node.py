"""`knet node add|remove|stop|start`: nodes joining and leaving a running cluster, and node
failure drills (see knet/cluster/nodes.py and knet/cluster/lifecycle.py)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from knet.cluster.state import DEFAULT_STATE_DIR
from knet.errors import KnetError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "node", help="add or remove a node; stop or start a node's agent",
        description="'knet node add [NAME]' joins a new node to the running cluster: its own "
        "netns, agent (kubelet) and kube-proxy, the next free pod CIDR, host-gw routes to and "
        "from every other node; DaemonSets put their pods on it. 'knet node remove NAME' "
        "stops its components, deletes the Node (its pods are garbage-collected and replaced "
        "elsewhere) and removes its netns and routes; drain it first with 'kubectl drain' to "
        "move pods gracefully. 'knet node stop NAME' stops the node's agent the way a kubelet "
        "dies: its containers and kube-proxy keep running, its Lease stops being renewed, and "
        "the control plane marks it NotReady and reschedules its pods. 'knet node start NAME' "
        "brings the agent back; it adopts what still runs.")
    p.add_argument("action", choices=["add", "remove", "stop", "start"])
    p.add_argument("name", nargs="?", help="node name, e.g. node-3 (add: default node-N, N the "
                   "next free index)")
    p.add_argument("--timeout", type=float, default=90.0, help="add: seconds to wait for Ready")
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                   help=f"where the cluster keeps its state (default {DEFAULT_STATE_DIR})")
    p.set_defaults(func=_node)


def _say(msg: str) -> None:
    print(f"  {msg}", flush=True)


def _node(args: argparse.Namespace) -> int:
    from knet.cluster import lifecycle, nodes

    if args.action == "add":
        name = asyncio.run(nodes.add_node(args.state_dir, args.name, timeout=args.timeout,
                                          say=_say))
        print(f"node {name}: joined and Ready")
        return 0
    if not args.name:
        raise KnetError(f"knet node {args.action}: which node? e.g. 'knet node {args.action} "
                        "node-2' (see 'knet status')")
    if args.action == "remove":
        pods = asyncio.run(nodes.remove_node(args.state_dir, args.name, say=_say))
        print(f"node {args.name}: removed ({pods} pod sandbox(es) stopped)")
    elif args.action == "stop":
        lifecycle.stop_agent(args.state_dir, args.name)
        print(f"node {args.name}: agent stopped (its containers keep running)")
    else:
        lifecycle.start_agent(args.state_dir, args.name)
        print(f"node {args.name}: agent started")
    return 0
