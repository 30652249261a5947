"""One real 2-node cluster for the mesh's end-to-end tests. The `Cluster` helper and the
`cluster` fixture are the ones of tests/integration/knet/cluster/conftest.py, loaded from
that file (not copied), as tests/integration/knet/flows does."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

_spec = importlib.util.spec_from_file_location(
    "knet_cluster_conftest_mesh", Path(__file__).parents[1] / "cluster" / "conftest.py")
assert _spec is not None and _spec.loader is not None
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
Cluster: Any = _mod.Cluster
cluster = _mod.cluster  # the module-scoped fixture: knet up --nodes 2 ... knet down
