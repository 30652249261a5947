"""One module per `knet` subcommand (or family), discovered by `knet.cli.main`.

Each module defines `register(sub: argparse._SubParsersAction) -> None`, adding its parser(s)
with `set_defaults(func=...)`; `func(args) -> int` is the command and returns the exit code.
"""
