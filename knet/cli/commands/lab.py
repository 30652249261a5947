"""`knet lab list | run NN [--step] | check NN|--all`: the self-checking lessons in labs/.

run: narrated, every step and its output shown (pausing before each with --step).
check: quiet; one line per lab and the exit code (0 = every check passed). --all reuses one
cluster for every lab (each in its own namespace, deleted after). --set key=value overrides a
lab variable, e.g. to watch a check fail when the behaviour is switched off.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from knet.cluster.state import DEFAULT_STATE_DIR
from knet.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("lab", help="self-checking labs: list, run (narrated), check (quiet)",
                       description="Labs teach Kubernetes networking by doing it on a real "
                       "knet cluster. Each lab brings up its own cluster (knet up in "
                       "--state-dir) and takes it down at the end, Ctrl-C included; --reuse "
                       "runs in a cluster that is already up instead.")
    lsub = p.add_subparsers(dest="lab_command", metavar="ACTION", required=True)
    lp = lsub.add_parser("list", help="the labs")
    lp.set_defaults(func=_list)
    for name, helptext in (("run", "run one lab, narrated"),
                           ("check", "run labs quietly; exit code 0 if every check passes")):
        q = lsub.add_parser(name, help=helptext)
        q.add_argument("lab", nargs="?" if name == "check" else None, help="lab number, e.g. 06")
        if name == "check":
            q.add_argument("--all", action="store_true", help="every lab, on one cluster")
        else:
            q.add_argument("--step", action="store_true", help="pause before each step")
        q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a lab variable (see the lab.yaml's vars)")
        q.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
        q.add_argument("--reuse", action="store_true",
                       help="use the cluster already up in --state-dir")
        q.set_defaults(func=_run if name == "run" else _check)


def _list(args: argparse.Namespace) -> int:
    from knet.labs.session import catalog

    for e in catalog():
        lab = e.load()
        print(f"  {e.number}  {e.dir.name:<26} {lab.title}")
    print("run one with: knet lab run NN   (check them all: knet lab check --all)")
    return 0


def _overrides(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise UsageError(f"--set {pair!r}: expected KEY=VALUE")
        out[key] = value
    return out


def _run(args: argparse.Namespace) -> int:
    from knet.labs.runner import LabEvent, LabRun
    from knet.labs.session import find, lab_cluster

    entry = find(args.lab)
    lab = entry.load()
    print(f"== lab {entry.number}: {lab.title} ==  (lesson: {entry.dir / 'README.md'})")

    def show(ev: LabEvent) -> None:
        if ev.kind == "say":
            print("\n" + "\n".join("  " + ln for ln in ev.text.splitlines()))
        elif ev.kind == "step":
            print(f"\n[{ev.index or 'cleanup'}] {ev.text}", flush=True)
        elif ev.kind == "output" and ev.text:
            lines = ev.text.splitlines()
            for ln in lines[:25]:
                print(f"    | {ln}")
            if len(lines) > 25:
                print(f"    | ... ({len(lines) - 25} more lines)")
        elif ev.kind in ("ok", "skip", "fail"):
            mark = {"ok": "ok", "skip": "SKIPPED", "fail": "FAILED"}[ev.kind]
            print(f"    -> {mark}" + ("" if ev.kind == "ok" else f": {ev.text}"), flush=True)

    def pause(i: int, step: object) -> None:
        if args.step:
            input(f"\n-- step {i}: press Enter to go on (Ctrl-C stops and cleans up) ")

    with lab_cluster(args.state_dir, nodes=lab.cluster.nodes, env=lab.cluster.env,
                     reuse=args.reuse, say=lambda t: print(f"-- {t}", flush=True),
                     up=lab.cluster.up) as kube:
        res = LabRun(lab, entry.dir, kube, namespace=entry.namespace, report=show,
                     overrides=_overrides(args.set), before_step=pause).run()
    print()
    for s in res.skipped:
        print(f"skipped: {s}")
    print(f"lab {entry.number}: " + ("PASSED" if res.ok else f"FAILED at {res.message}"))
    return 0 if res.ok else 1


def _check(args: argparse.Namespace) -> int:
    from knet.labs.model import Lab
    from knet.labs.runner import LabEvent, LabRun
    from knet.labs.session import LabEntry, catalog, find, lab_cluster

    if bool(args.all) == bool(args.lab):
        raise UsageError("knet lab check: name one lab (e.g. 06) or pass --all")
    entries = catalog() if args.all else [find(args.lab)]
    labs = [(e, e.load()) for e in entries]
    overrides = _overrides(args.set)
    known = {k for _, lab in labs for k in lab.vars}
    if set(overrides) - known:
        raise UsageError(f"--set {', '.join(sorted(set(overrides) - known))}: no such lab "
                         f"variable; the labs have: {', '.join(sorted(known))}")
    # one cluster per set of `knet up` flags the labs ask for (most share the default one)
    groups: dict[tuple[str, ...], list[tuple[LabEntry, Lab]]] = {}
    for e, lab in labs:
        groups.setdefault(tuple(lab.cluster.up), []).append((e, lab))
    failed = 0

    def quiet(ev: LabEvent) -> None:
        return None

    for up, members in groups.items():
        env: dict[str, str] = {}
        for _, lab in members:
            env.update(lab.cluster.env)
        nodes = max(lab.cluster.nodes for _, lab in members)
        with lab_cluster(args.state_dir, nodes=nodes, env=env, reuse=args.reuse, up=up,
                         say=lambda t: print(f"-- {t}", file=sys.stderr, flush=True)) as kube:
            for e, lab in members:
                t0 = time.monotonic()
                mine = {k: v for k, v in overrides.items() if k in lab.vars}
                res = LabRun(lab, e.dir, kube, namespace=e.namespace, report=quiet,
                             overrides=mine).run()
                took = time.monotonic() - t0
                skipped = f" ({len(res.skipped)} step(s) skipped: {res.skipped[0]})" \
                    if res.skipped else ""
                print(f"lab {e.number} {'passed' if res.ok else 'FAILED'} in {took:.0f}s"
                      + (f": {res.message}" if not res.ok else skipped), flush=True)
                failed += not res.ok
    print(f"{len(labs) - failed}/{len(labs)} lab(s) passed")
    return 1 if failed else 0
