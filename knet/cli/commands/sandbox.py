"""`knet sandbox -- CMD`: run CMD in a throwaway network + mount + PID namespace."""

from __future__ import annotations

import argparse

from knet.errors import KnetError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("sandbox", help="run a command in a private, throwaway network world",
                       description="Run CMD in fresh network, mount and PID namespaces with their "
                       "own /run/netns and /var/lib/knet. Everything made inside vanishes when "
                       "CMD exits, and no packet can leave.")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from knet.dataplane import sandbox

    argv = list(args.cmd)
    if argv and argv[0] == "--":
        argv = argv[1:]
    try:
        return sandbox.run(argv)
    except sandbox.SandboxError as exc:
        raise KnetError(str(exc).removeprefix("knet sandbox: ")) from None
