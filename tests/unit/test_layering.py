"""The import rules of docs/architecture.md, checked on the source: control never imports knet; only
knet/dataplane imports pyroute2; only knet/flows imports scapy."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_control_never_imports_knet() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in _modules("control") if "knet" in _imports(p)]
    assert offenders == []


def test_only_dataplane_imports_pyroute2() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in _modules("knet") + _modules("control")
                 if "pyroute2" in _imports(p) and "dataplane" not in p.parts]
    assert offenders == []


def test_only_flows_imports_scapy() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in _modules("knet") + _modules("control")
                 if "scapy" in _imports(p) and "flows" not in p.parts]
    assert offenders == []


def test_rules_see_real_imports(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("import pyroute2.iproute\nfrom knet.x import y\nfrom . import z\n")
    assert _imports(f) == {"pyroute2", "knet"}
