"""The Runtime contract on ProcessRuntime with real namespaces, inside `knet sandbox`."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "unit" / "knet" / "runtime"))

from runtime_contract import *
