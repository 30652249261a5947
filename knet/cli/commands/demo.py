"""`knet demo [--keep]`: a 2-node cluster, a backend and a frontend, DNS, round-robin,
session affinity and a hop-by-hop trace, checked as it goes; exits non-zero naming the stage
that did not behave. Tears the cluster down at the end (Ctrl-C included) unless --keep."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from knet.cluster.state import DEFAULT_STATE_DIR


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("demo", help="a one-minute tour: services, DNS, round-robin, affinity, "
                       "trace", description=__doc__)
    p.add_argument("--keep", action="store_true",
                   help="leave the cluster and the demo's objects up at the end")
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from knet.demo import Demo, DemoFailed
    from knet.labs.session import lab_cluster

    t0 = time.monotonic()

    def say(kind: str, text: str) -> None:
        prefix = {"stage": f"\n[{time.monotonic() - t0:4.0f}s] ==> ", "info": "      ",
                  "table": "      ", "ok": "      ok: ", "skip": "      "}.get(kind, "")
        print(prefix + text, flush=True)

    print("knet demo: a 2-node cluster, a backend and a frontend, and what happens between "
          "them")
    try:
        with lab_cluster(args.state_dir, nodes=2, env={}, reuse=False, keep=args.keep, who="the demo",
                         say=lambda t: say("stage", t)) as kube:
            Demo(kube, say=say, state_dir=str(args.state_dir)).run()
    except DemoFailed as exc:
        print(f"\nknet demo: FAILED at stage '{exc.stage}': {exc}")
        return 1
    print(f"\nknet demo: done in {time.monotonic() - t0:.0f}s")
    return 0
