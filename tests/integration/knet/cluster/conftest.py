"""A real cluster for end-to-end tests: `knet up --nodes 2` in a temporary state dir (inside
the test sandbox), driven with the real kubectl, and `knet down` at the end. The kit itself
is tests/integration/clusterkit.py; its names are re-exported here for this directory's
tests (`from conftest import Cluster`), and its `cluster` fixture offered."""

from __future__ import annotations

from clusterkit import WEB_DEPLOYMENT, Cluster, client_pod, cluster, cluster_up, host_state

__all__ = ["WEB_DEPLOYMENT", "Cluster", "client_pod", "cluster", "cluster_up", "host_state"]
