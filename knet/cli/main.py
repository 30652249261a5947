"""Entry point of the `knet` command: builds the parser from the modules in
`knet.cli.commands` (each registers its own subcommands) and runs the chosen one.

Errors meant for the user (`KnetError` and friends) are printed as one line on stderr with
exit code 1; a traceback means a bug.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
from collections.abc import Sequence

from knet import __version__
from knet.cli import commands
from knet.errors import KnetError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="knet", description="Kubernetes networking, emulated for real on this host.")
    parser.add_argument("--version", action="version", version=f"knet {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KnetError as exc:
        print(f"knet: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("knet: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `knet ... | head`: the reader left; end quietly like cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
