"""One real 2-node cluster for the mesh's end-to-end tests: the shared kit's `cluster`
fixture (tests/integration/clusterkit.py: knet up --nodes 2 ... knet down)."""

from __future__ import annotations

from clusterkit import Cluster, cluster

__all__ = ["Cluster", "cluster"]
