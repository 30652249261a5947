"""`knet netpol probe|explain`: NetworkPolicy reachability measured for real, and explained.

probe: every selected pod connects to every other (from inside its netns) and the result is
printed as the upstream netpol e2e suite's truth table ('.' connected, 'X' not); with
--compare, also what the policies say and where the two differ.
explain: for FROM -> TO PORT[/PROTO], FROM's egress and TO's ingress: isolated by which
policies, allowed by which rule, or dropped by default deny.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from knet.cluster.state import DEFAULT_STATE_DIR
from knet.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("netpol", help="NetworkPolicy: probe reachability, explain a verdict",
                       description="probe: connect every pod to every other for real and print "
                       "the truth table; explain: which policies allow or deny FROM -> TO.")
    cmds = p.add_subparsers(dest="netpol_cmd", required=True)
    pr = cmds.add_parser("probe", help="connect every selected pod to every other, print the "
                         "reachability truth table")
    pr.add_argument("-n", "--namespace", action="append", default=[], metavar="NS",
                    help="pods of this namespace (repeatable; default: every namespace but "
                    "kube-*)")
    pr.add_argument("--port", type=int, default=80)
    pr.add_argument("--protocol", choices=["tcp", "udp"], default="tcp")
    pr.add_argument("--timeout", type=float, default=1.0, metavar="SECONDS",
                    help="per connection (a dropped attempt waits this long)")
    pr.add_argument("--compare", action="store_true",
                    help="also print what the policies say, and the comparison")
    pr.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    pr.set_defaults(func=_probe)
    ex = cmds.add_parser("explain", help="which policies allow or deny FROM -> TO PORT[/PROTO]")
    ex.add_argument("src", metavar="FROM", help="a pod (NS/NAME, or NAME in -n) or an IP")
    ex.add_argument("dst", metavar="TO", help="a pod (NS/NAME, or NAME in -n) or an IP")
    ex.add_argument("port", metavar="PORT[/PROTO]", help="e.g. 80, 53/udp")
    ex.add_argument("-n", "--namespace", default="default")
    ex.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    ex.set_defaults(func=_explain)


def _port(text: str) -> tuple[int, str]:
    num, _, proto = text.partition("/")
    proto = (proto or "tcp").lower()
    if not num.isdigit() or not 0 < int(num) < 65536 or proto not in ("tcp", "udp", "sctp"):
        raise UsageError(f"port {text!r}: give PORT or PORT/PROTO (tcp, udp, sctp), e.g. 80 "
                         "or 53/udp")
    return int(num), proto


def _explain(args: argparse.Namespace) -> int:
    from knet.policy.clusterload import load_model
    from knet.policy.explain import decide

    port, proto = _port(args.port)
    model = asyncio.run(load_model(args.state_dir))

    def ip_of(ref: str) -> str:
        if ref.replace(".", "").isdigit():
            return ref
        key = ref.removeprefix("pod/") if "/" in ref.removeprefix("pod/") else \
            f"{args.namespace}/{ref.removeprefix('pod/')}"
        pod = model.pods.get(key)
        if pod is None:
            have = ", ".join(sorted(k for k in model.pods if k.startswith(key.split("/")[0] + "/")))
            raise UsageError(f"pod {key}: not found or has no IP yet; pods there: {have or 'none'}")
        return pod.ip

    decision = decide(model, ip_of(args.src), ip_of(args.dst), port, proto)
    print("\n".join(decision.lines()))
    for err in model.errors:
        print(f"warning: {err}")
    return 0 if decision.allowed else 1


def _probe(args: argparse.Namespace) -> int:
    from knet.flows.cluster import ClusterView
    from knet.policy.probe import Endpoint, probe_all, truth_table

    view = asyncio.run(ClusterView.load(args.state_dir))
    wanted = set(args.namespace)
    pods = [Endpoint(p.key, p.ip, p.netns) for p in sorted(view.pods.values(), key=lambda p: p.key)
            if p.ip and p.netns and p.phase == "Running" and p.ip not in
            {n.ip for n in view.nodes.values()}
            and (p.key.split("/")[0] in wanted if wanted else not p.key.startswith("kube-"))]
    if not pods:
        raise UsageError("knet netpol probe: no running pods in "
                         f"{', '.join(sorted(wanted)) or 'any namespace but kube-*'}")
    got = probe_all(pods, args.port, args.protocol, timeout=args.timeout)
    keys = [p.key for p in pods]
    print(f"reachability {args.port}/{args.protocol} ('.' connected, 'X' not; rows: from, "
          "columns: to):")
    print(truth_table(keys, lambda a, b: got[(a, b)]), end="")
    if not args.compare:
        return 0
    from knet.policy.clusterload import load_model
    from knet.policy.explain import decide

    model = asyncio.run(load_model(args.state_dir))
    ip = {p.key: p.ip for p in pods}

    def want(a: str, b: str) -> bool:
        return a == b or decide(model, ip[a], ip[b], args.port, args.protocol).allowed

    print("expected (from the policies):")
    print(truth_table(keys, want), end="")
    print("comparison ('.' same, 'X' different; a pod to itself is ignored):")
    print(truth_table(keys, lambda a, b: a == b or want(a, b) == got[(a, b)]), end="")
    return 0 if all(a == b or want(a, b) == got[(a, b)] for a in keys for b in keys) else 1
