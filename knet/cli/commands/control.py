"""`knet control --state-dir DIR --listen HOST:PORT [--store URL]`: run the control plane
(API server, store, controllers) in the foreground until SIGTERM."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from knet.errors import KnetError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("control", help="run the control plane (API server, store, controllers)",
                       description="Serve the Kubernetes-compatible API on loopback (and on the "
                       "--listen address), run the controllers, and write DIR/kubeconfig once "
                       "serving. Stops cleanly on SIGTERM.")
    p.add_argument("--state-dir", type=Path, default=Path("/var/lib/knet"),
                   help="where state.db, kubeconfig, token and control.pid live "
                   "(default /var/lib/knet)")
    p.add_argument("--listen", default="127.0.0.1:6443",
                   help="HOST:PORT to serve on (default 127.0.0.1:6443; loopback is always "
                   "served too)")
    p.add_argument("--store", default=None,
                   help="memory://, sqlite:///PATH.db (default DIR/state.db) or etcd://HOST:PORT")
    p.add_argument("--no-controllers", action="store_true",
                   help="serve the API only (for tests and benchmarks)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from control import server
    from knet.dataplane.nodesockets import NodeNetnsSockets

    try:
        host, port = server.parse_listen(args.listen)
    except ValueError as exc:
        raise KnetError(str(exc)) from None
    config = server.ServerConfig(state_dir=args.state_dir, host=host, port=port,
                                 store_url=args.store, pod_network=NodeNetnsSockets(),
                                 hooks=() if args.no_controllers else server.CONTROLLER_HOOKS)

    def ready(url: str) -> None:
        print(f"knet control: serving {url}; KUBECONFIG={args.state_dir}/kubeconfig",
              flush=True)

    try:
        server.run(config, on_ready=ready)
    except (ValueError, OSError) as exc:
        raise KnetError(f"control plane: {exc}") from None
    print("knet control: stopped", file=sys.stderr)
    return 0
