"""The HorizontalPodAutoscaler Walkthrough end to end with the real kubectl on a 2-node
cluster: the docs' php-apache (registry.k8s.io/hpa-example, 200m CPU requested, 500m limit),
`kubectl autoscale deployment php-apache --cpu-percent=50 --min=1 --max=10`, `kubectl top`
printing the pods' real cgroup usage, a load generator pod running the docs' wget loop, the
Deployment scaling up under load (`kubectl get hpa` TARGETS above 50%) and back to one replica
after the load stops.

Shortened for a test, not changed in kind: the kubelets are scraped every 5 s and the HPA
syncs every 5 s (KNET_METRIC_RESOLUTION / KNET_HPA_SYNC_PERIOD; 15 s each by default), and
the scale-down stabilization window is cut from 300 s to 20 s through the HPA's `behavior`,
as a user would do it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from clusterkit import Cluster

pytestmark = pytest.mark.root

# the walkthrough's php-apache.yaml, unchanged
PHP_APACHE = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: php-apache
spec:
  selector:
    matchLabels:
      run: php-apache
  template:
    metadata:
      labels:
        run: php-apache
    spec:
      containers:
      - name: php-apache
        image: registry.k8s.io/hpa-example
        ports:
        - containerPort: 80
        resources:
          limits:
            cpu: 500m
          requests:
            cpu: 200m
---
apiVersion: v1
kind: Service
metadata:
  name: php-apache
  labels:
    run: php-apache
spec:
  ports:
  - port: 80
  selector:
    run: php-apache
"""
LOAD = "while sleep 0.01; do wget -q -O- http://php-apache; done"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("cluster")
    c = Cluster(base / "state", base / "kubecache")
    c.knet("up", "--nodes", "2", "--state-dir", str(c.state_dir), "--timeout", "90",
           env={"KNET_METRIC_RESOLUTION": "5", "KNET_HPA_SYNC_PERIOD": "5"})
    try:
        yield c
    finally:
        c.knet("down", "--state-dir", str(c.state_dir), check=False)


def _hpa_row(cluster: Cluster) -> list[str]:
    out = cluster.kubectl("get", "hpa", "php-apache").stdout.splitlines()
    assert out[0].split() == ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS",
                              "REPLICAS", "AGE"]
    return re.split(r"\s{2,}", out[1].strip())


def _replicas(cluster: Cluster) -> int:
    return int(cluster.get("deployment", "php-apache")["spec"]["replicas"])


def test_walkthrough_scales_up_under_load_and_back_down(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=PHP_APACHE)
    cluster.ready_pods("run=php-apache", 1, timeout=60)
    out = cluster.kubectl("autoscale", "deployment", "php-apache", "--cpu-percent=50",
                          "--min=1", "--max=10").stdout
    assert out.strip() == "horizontalpodautoscaler.autoscaling/php-apache autoscaled"
    cluster.kubectl("patch", "hpa", "php-apache", "--type=merge", "-p",
                    '{"spec":{"behavior":{"scaleDown":{"stabilizationWindowSeconds":20}}}}')

    # idle: the HPA computes 0% (a real measurement, not <unknown>) and keeps one replica
    row = cluster.wait("TARGETS with a value",
                       lambda: (r := _hpa_row(cluster))[2] != "cpu: <unknown>/50%" and r,
                       timeout=60)
    assert row[:6] == ["php-apache", "Deployment/php-apache", row[2], "1", "10", "1"]
    assert re.fullmatch(r"cpu: \d+%/50%", row[2]) and int(row[2][5:].split("%")[0]) < 50

    def top_pod() -> Any:
        r = cluster.kubectl("top", "pod", "-l", "run=php-apache", "--containers", check=False)
        return r.returncode == 0 and r.stdout
    top = cluster.wait("kubectl top pod", top_pod, timeout=30)
    header, line = top.splitlines()[:2]
    assert header.split() == ["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"]
    cells = line.split()
    assert cells[0].startswith("php-apache-") and cells[1] == "php-apache"
    assert re.fullmatch(r"\d+m", cells[2]) and re.fullmatch(r"\d+Mi", cells[3])
    assert int(cells[3][:-2]) > 0                   # a real working set, not zeros

    cluster.kubectl("run", "load-generator", "--image=busybox", "--restart=Never", "--",
                    "/bin/sh", "-c", LOAD)
    try:
        busy = cluster.wait("CPU above the target", lambda: (
            (r := _hpa_row(cluster)) and int(r[2][5:].split("%")[0]) > 50 and r), timeout=90)
        cluster.wait("a scale-up", lambda: _replicas(cluster) > 1, timeout=60)
        top = cluster.kubectl("top", "pod", "-l", "run=php-apache").stdout.splitlines()
        assert any(int(line.split()[1][:-1]) >= 100 for line in top[1:]), (busy, top)
        hpa = cluster.get("hpa", "php-apache")
        conds = {c["type"]: c for c in hpa["status"]["conditions"]}
        assert conds["ScalingActive"]["reason"] == "ValidMetricFound"
        events = cluster.kubectl("get", "events", "--field-selector",
                                 "involvedObject.name=php-apache,reason=SuccessfulRescale"
                                 ).stdout
        assert "New size:" in events and "above target" in events
        nodes = cluster.kubectl("top", "node").stdout.splitlines()
        assert nodes[0].split()[:3] == ["NAME", "CPU(cores)", "CPU(%)"]
        assert sum(int(line.split()[1][:-1]) for line in nodes[1:]) >= 100
    finally:
        cluster.kubectl("delete", "pod", "load-generator", "--wait=false", check=False)

    cluster.wait("back to one replica", lambda: _replicas(cluster) == 1, timeout=150,
                 every=2)
    events = cluster.kubectl("get", "events", "--field-selector",
                             "involvedObject.name=php-apache,reason=SuccessfulRescale").stdout
    assert "All metrics below target" in events
