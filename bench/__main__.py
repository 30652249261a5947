"""`python -m bench` lists the benchmarks; `python -m bench NAME [args]` runs one.

Listing reads each module's source (its `NAME` and `DESCRIPTION` constants and a `main`
function) without importing it, so a benchmark whose imports need root or a sandbox still shows
up, and listing stays instant. Running imports only the chosen module.
"""

from __future__ import annotations

import ast
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Benchmark:
    name: str
    description: str
    module: str


def _constants(tree: ast.Module) -> dict[str, str]:
    out: dict[str, str] = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            out[node.targets[0].id] = node.value.value
    return out


def discover(directory: Path = HERE) -> list[Benchmark]:
    """Every benchmark module in directory, sorted by name."""
    found: list[Benchmark] = []
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith("_") or path.stem == "common":
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        consts = _constants(tree)
        has_main = any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body)
        if "NAME" in consts and "DESCRIPTION" in consts and has_main:
            found.append(Benchmark(consts["NAME"], consts["DESCRIPTION"],
                                   f"{directory.name}.{path.stem}"))
    return sorted(found, key=lambda b: b.name)


def listing(benchmarks: list[Benchmark]) -> str:
    if not benchmarks:
        return "no benchmarks found in bench/"
    width = max(len(b.name) for b in benchmarks)
    lines = ["benchmarks (python -m bench NAME [--help]):"]
    lines += [f"  {b.name:<{width}}  {b.description}" for b in benchmarks]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    benchmarks = discover()
    if not argv or argv[0] in ("-h", "--help", "list"):
        print(listing(benchmarks))
        return 0
    by_name = {b.name: b for b in benchmarks}
    chosen = by_name.get(argv[0])
    if chosen is None:
        print(f"no benchmark named {argv[0]!r}; known: {', '.join(by_name) or 'none'}",
              file=sys.stderr)
        return 2
    module = importlib.import_module(chosen.module)
    return int(module.main(argv[1:]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
