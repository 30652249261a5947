"""The cluster helper of tests/integration/knet/cluster (its conftest's `Cluster`), loaded under
its own module name so that dataplane tests can start clusters with other options."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parents[1] / "cluster" / "conftest.py"
_spec = importlib.util.spec_from_file_location("knet_cluster_kit", _PATH)
assert _spec is not None and _spec.loader is not None
_mod = importlib.util.module_from_spec(_spec)
sys.modules["knet_cluster_kit"] = _mod
_spec.loader.exec_module(_mod)

Cluster = _mod.Cluster
host_state = _mod.host_state
client_pod = _mod.client_pod

__all__ = ["Cluster", "client_pod", "host_state"]
