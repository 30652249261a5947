"""`knet apply/get/describe/delete/logs/exec/scale/rollout`: the everyday commands, as a thin
layer over the real kubectl run with this cluster's kubeconfig (and a kubectl cache under the
state dir). Everything after the command name is passed to kubectl unchanged, so kubectl's
own flags and output apply; stdin/stdout/stderr are the terminal's, so `exec -it` works.
"""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

from knet.cluster.state import DEFAULT_STATE_DIR

COMMANDS = {
    "apply": "create or update objects from YAML (kubectl apply)",
    "get": "list objects (kubectl get)",
    "describe": "show an object in detail, with its events (kubectl describe)",
    "delete": "delete objects (kubectl delete)",
    "logs": "print a container's logs (kubectl logs)",
    "exec": "run a command in a container (kubectl exec)",
    "scale": "set a Deployment/ReplicaSet/RC's replicas (kubectl scale)",
    "rollout": "status/history/undo/pause/resume of a Deployment (kubectl rollout)",
}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    for name, summary in COMMANDS.items():
        p = sub.add_parser(
            name, help=summary, prefix_chars="+",
            description=f"{summary}. knet runs the installed kubectl with the cluster's "
            "kubeconfig (STATE_DIR/kubeconfig) and a cache dir under the state dir; every "
            f"argument is passed on: 'knet {name} ARGS' = 'kubectl {name} ARGS'. Pick the "
            "cluster with the KNET_STATE_DIR environment variable "
            f"(default {DEFAULT_STATE_DIR}).")
        p.add_argument("args", nargs=argparse.REMAINDER, help="kubectl arguments")
        p.set_defaults(func=_run, kubectl_command=name, describe=p.description)


def _run(args: argparse.Namespace) -> int:
    from knet.labs.kube import Kube, kubectl_binary

    binary = kubectl_binary()  # no kubectl: say how to install it, before anything else
    rest = list(args.args)
    if rest[:1] in (["-h"], ["--help"]):
        print(f"knet {args.kubectl_command}: {args.describe}\n\nkubectl's help follows.\n")
        return subprocess.call([binary, args.kubectl_command, "--help"])
    state_dir = Path(os.environ.get("KNET_STATE_DIR") or DEFAULT_STATE_DIR)
    kube = Kube.for_state_dir(state_dir)
    if rest[:1] == ["--"] and args.kubectl_command != "exec":
        rest = rest[1:]
    return subprocess.call(kube.argv(args.kubectl_command, *rest))
