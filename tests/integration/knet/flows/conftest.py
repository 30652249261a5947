"""One real 2-node cluster for the flow tools' tests: a client pinned to node-1, a backend
on node-1 (`near`), one on node-2 (`far`), a two-replica `web`, and `empty` (no endpoints).

The `Cluster` helper is the one of tests/integration/knet/cluster/conftest.py, loaded from
that file (not copied)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from clusterkit import cluster_up


def _deploy(name: str, replicas: int, node: str | None = None) -> str:
    sel = f"\n      nodeSelector: {{kubernetes.io/hostname: {node}}}" if node else ""
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:{sel}
      containers:
      - {{name: whoami, image: knet/whoami, ports: [{{containerPort: 80}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: {name}}}
  ports: [{{port: 80, targetPort: 80}}]
"""


MANIFESTS = "---".join([_deploy("web", 2), _deploy("near", 1, "node-1"),
                        _deploy("far", 1, "node-2"), """
apiVersion: v1
kind: Service
metadata: {name: empty}
spec:
  selector: {app: nothing-has-this-label}
  ports: [{port: 80, targetPort: 80}]
""", """
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeSelector: {kubernetes.io/hostname: node-1}
  containers:
  - {name: c, image: busybox, command: [sleep, "3600"]}
"""])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with cluster_up(tmp_path_factory.mktemp("flows")) as c:
        c.kubectl("apply", "-f", "-", input=MANIFESTS)
        c.ready_pods("app=web", 2)
        c.ready_pods("app=near", 1)
        c.ready_pods("app=far", 1)
        c.wait("client running", lambda: c.get("pod", "client")["status"].get("phase")
               == "Running")
        c.wait("endpoints of web", lambda: len(c.get("endpointslices", "-l",
                                                     "kubernetes.io/service-name=web")
                                              ["items"][0].get("endpoints") or []) == 2)
        yield c
