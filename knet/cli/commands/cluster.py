"""`knet up`, `knet down`, `knet status`, `knet kubeconfig`: the cluster on this host."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from knet.cluster.state import DEFAULT_STATE_DIR, ClusterRecord
from knet.errors import KnetError
from knet.proxy.balancer import ALGORITHMS


def _state_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                   help=f"where the cluster keeps its state (default {DEFAULT_STATE_DIR})")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("up", help="start a cluster (or restart its dead components)",
                       description="Start the control plane and, per node, an agent and a "
                       "kube-proxy in the background, wait until every node is Ready, and "
                       "write a kubeconfig. On a cluster that is already recorded, restart "
                       "exactly the components that died (same store, same files).")
    p.add_argument("--nodes", type=int, default=None, help="number of nodes (default 2)")
    p.add_argument("--store", default=None,
                   help="sqlite:///PATH (default: DIR/state.db), memory://, or etcd://HOST:PORT")
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--backend", choices=["host-gw", "vxlan"], default=None,
                   help="cross-node pod traffic: host-gw routes (default) or a Flannel-style "
                   "VXLAN overlay (flannel.1, VNI 1, UDP 8472, pod MTU 1450)")
    p.add_argument("--cni", choices=["builtin", "reference"], default=None,
                   help="pod wiring through a CNI conflist in STATE/cni/NODE: knet's built-in "
                   "plugin (default) or the reference plugins (bridge, host-local, portmap, "
                   "loopback from /usr/lib/cni); each call is logged in STATE/cni/NODE/cni.log")
    p.add_argument("--proxy-algorithm", default=None,
                   choices=ALGORITHMS,
                   help="how each node's proxy balances a Service's connections (default "
                   "round-robin; a Service's annotation knet.dev/proxy-algorithm wins)")
    p.add_argument("--lb-pool", default=None, metavar="CIDR",
                   help="addresses for type: LoadBalancer Services, inside the underlay "
                   "(default 172.18.255.0/24)")
    p.add_argument("--no-preserve-source-ip", dest="preserve_source_ip", action="store_false",
                   default=None,
                   help="backends see the node's address instead of the client pod's (default: "
                   "the client's, as kube-proxy keeps it; for comparisons)")
    p.add_argument("--proxy-mode", choices=["userspace", "nftables"], default=None,
                   help="kube-proxy mode of every node: userspace (default, listeners in "
                   "`knet proxy`) or nftables (kube-proxy's nftables mode: the kernel DNATs)")
    _state_arg(p)
    p.set_defaults(func=_up)

    p = sub.add_parser("down", help="stop the cluster and remove everything it made")
    _state_arg(p)
    p.set_defaults(func=_down)

    p = sub.add_parser("status", help="what is running: processes, nodes, pods per node")
    _state_arg(p)
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    p.set_defaults(func=_status)

    p = sub.add_parser("kubeconfig", help="print the kubeconfig path (last line)")
    _state_arg(p)
    p.set_defaults(func=_kubeconfig)


def _up(args: argparse.Namespace) -> int:
    from knet.cluster import lifecycle

    from knet.cluster.state import ClusterOptions

    options = {name: getattr(args, name) for name in ClusterOptions.FLAGS}
    res = asyncio.run(lifecycle.up(args.state_dir, nodes=args.nodes, store=args.store,
                                   timeout=args.timeout, options=options,
                                   say=lambda m: print(f"  {m}", flush=True)))
    rec = res.rec
    if res.adopted and not res.restarted:
        print(f"cluster up: {', '.join(res.adopted)} adopted into the record; API at "
              f"{rec.server}")
        return 0
    if not res.fresh and not res.restarted:
        print(f"cluster already up in {args.state_dir}: {rec.nodes} node(s), every component "
              f"running, API at {rec.server}; nothing to do")
        return 0
    if res.restarted:
        print(f"cluster up again: restarted {', '.join(res.restarted)}; API at {rec.server}")
        return 0
    print(f"cluster up: {rec.nodes} node(s), API at {rec.server}")
    print("use it with:")
    print(f"  export KUBECONFIG={rec.kubeconfig}")
    print("  kubectl get nodes        # or: knet get nodes")
    print("stop it with: knet down")
    return 0


def _down(args: argparse.Namespace) -> int:
    from knet.cluster import lifecycle

    if not asyncio.run(lifecycle.down(args.state_dir, say=lambda m: print(f"  {m}", flush=True))):
        print(f"no cluster in {args.state_dir}: nothing to do")
        return 0
    print("cluster down: every process, namespace, link and file it made is gone")
    if args.state_dir.exists():
        print(f"  {args.state_dir} is as it was before 'knet up'")
    return 0


def _status(args: argparse.Namespace) -> int:
    from knet.cluster import lifecycle

    st = asyncio.run(lifecycle.status(args.state_dir))
    if args.output == "json":
        print(json.dumps(st, indent=2))
        return 0 if st["healthy"] else 1
    if "processes" not in st:
        print(f"no cluster in {args.state_dir}; start one with 'knet up'")
        return 1
    print(f"API server {st['server']}   kubeconfig {st['kubeconfig']}   backend "
          f"{st['backend']}, cni {st['cni']}")
    for role, p in st["processes"].items():
        pid = "-" if p["pid"] is None else p["pid"]
        print(f"  {role:<18} pid {pid:<8} {'running' if p['alive'] else 'DEAD':<8} {p['what']}")
    for name, n in (st.get("nodes") or {}).items():
        print(f"  node {name:<8} {'Ready' if n['ready'] else 'NotReady':<9} {n['pods']} pod(s)")
    if st.get("api_error"):
        print(f"the API server did not answer: {st['api_error']}")
    if st["dead"]:
        for role, what in st["dead"].items():
            print(f"DEAD: {role}: the {what} is not running; see its log, then run "
                  f"'knet up --state-dir {args.state_dir}' to restart it")
        return 1
    return 0


def _kubeconfig(args: argparse.Namespace) -> int:
    rec = ClusterRecord.load(args.state_dir)
    if rec is None or not rec.kubeconfig.exists():
        raise KnetError(f"no cluster in {args.state_dir}; start one with 'knet up'")
    print(f"export KUBECONFIG={rec.kubeconfig}")
    print(rec.kubeconfig)
    return 0
