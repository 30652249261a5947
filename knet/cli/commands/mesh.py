"""`knet mesh stat`: golden metrics per Service or Deployment, like `linkerd viz stat`.

The numbers come from every node proxy's flow records of the last `--window` (fetched as
`knet flows` fetches them) and are computed by knet/mesh/stat.py; a Deployment is the
serving side (the workload of the pod that answered).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from knet.cluster.state import DEFAULT_STATE_DIR
from knet.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("mesh", help="the service mesh: golden metrics",
                       description="Look at the mesh the node proxies run.")
    msub = p.add_subparsers(dest="mesh_command", required=True)
    s = msub.add_parser("stat", help="success rate, RPS and latency per service or deployment",
                        description="Golden metrics over the last --window, from the node "
                        "proxies' flow records: SUCCESS (responses not 5xx), RPS, "
                        "LATENCY_P50/P95/P99 of the request duration, TCP connections.")
    s.add_argument("target", nargs="?", default="svc",
                   help="svc, svc/NAME, deploy or deploy/NAME (default: every service)")
    s.add_argument("-n", "--namespace", default="default")
    s.add_argument("-A", "--all-namespaces", action="store_true")
    s.add_argument("-o", "--output", choices=["table", "json"], default="table",
                   help="json: one object per line (name, requests, success_rate in [0, 1], "
                   "rps, p50_ms, p95_ms, p99_ms, ...)")
    s.add_argument("--window", default="1m", help="how far back (30s, 1m, 5m; default 1m)")
    s.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    s.set_defaults(func=_stat)


def _window(text: str) -> float:
    from knet.proxy.flows import parse_since

    bad = UsageError(f"mesh stat: --window {text!r}: give a duration like 30s, 1m or 5m")
    if text.strip().replace(".", "").isdigit():
        raise bad  # epoch seconds: what --since takes, not a window
    try:
        now = time.time()
        secs = now - parse_since(text, now=now)
    except ValueError:
        raise bad from None
    if secs <= 0:
        raise bad
    return secs


def _stat(args: argparse.Namespace) -> int:
    from knet.mesh.stat import parse_target

    try:
        kind, name = parse_target(args.target)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    window = _window(args.window)
    return asyncio.run(_stat_main(args, kind, name, window))


async def _stat_main(args: argparse.Namespace, kind: str, name: str, window: float) -> int:
    from knet.flows import records
    from knet.flows.cluster import ClusterView
    from knet.mesh.stat import format_table, golden

    view = await ClusterView.load(args.state_dir)
    workloads = await _workloads(args.state_dir) if kind == "deploy" else {}
    since = time.time() - window
    errors: list[str] = []
    flows = await records.snapshot(view, flt=records.FlowFilter(since=since), errors=errors)
    ns = None if args.all_namespaces else args.namespace
    rows = golden(flows, kind=kind, namespace=ns, name=name,  # type: ignore[arg-type]
                  window=window, since=since, workload_of=workloads.get)
    for e in errors:
        print(f"knet mesh stat: {e}", file=sys.stderr)
    if args.output == "json":
        for r in rows:
            print(json.dumps(r.to_json()))
    elif rows:
        print(format_table(rows, all_namespaces=args.all_namespaces))
    else:
        where = "any namespace" if ns is None else f"namespace {ns}"
        print(f"No traffic in {where} over the last {args.window}.", file=sys.stderr)
    return 1 if errors and not rows else 0


async def _workloads(state_dir: Path) -> dict[str, str]:
    """"ns/pod" -> workload name (Deployment...), from the API's pods."""
    from control.client import HttpClient
    from knet.mesh.metrics import workload_of

    client = HttpClient.from_kubeconfig(state_dir / "kubeconfig")
    try:
        pods = (await client.list("pods")).items
    finally:
        await client.close()
    out = {}
    for p in pods:
        md = p.get("metadata") or {}
        out[f"{md.get('namespace', 'default')}/{md.get('name', '')}"] = workload_of(p)
    return out
