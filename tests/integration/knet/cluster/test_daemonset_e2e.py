"""Issue 13 (DaemonSet, nodes joining and leaving, PDB + drain) end to end with the real
kubectl: the docs' fluentd-elasticsearch DaemonSet (busybox sleeping instead of fluentd) gets
one pod per node; `knet node add n3` gets one there, which reaches a pod on node-1 and a
Service; `knet node remove n3` takes the node and its pod away; a rolling update, history and
undo; `kubectl drain` blocked by a PodDisruptionBudget until another replica is Ready."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from clusterkit import WEB_DEPLOYMENT, Cluster

DS = "fluentd-elasticsearch"
NS = "kube-system"
FLUENTD = """
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: fluentd-elasticsearch
  namespace: kube-system
  labels:
    k8s-app: fluentd-logging
spec:
  selector:
    matchLabels:
      name: fluentd-elasticsearch
  template:
    metadata:
      labels:
        name: fluentd-elasticsearch
    spec:
      tolerations:
      - key: node-role.kubernetes.io/control-plane
        operator: Exists
        effect: NoSchedule
      - key: node-role.kubernetes.io/master
        operator: Exists
        effect: NoSchedule
      containers:
      - name: fluentd-elasticsearch
        image: busybox
        command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
        resources:
          limits:
            memory: 200Mi
          requests:
            cpu: 100m
            memory: 200Mi
      terminationGracePeriodSeconds: 30
"""
WEB_SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
"""


def _ds_pods(c: Cluster) -> dict[str, dict]:
    """node -> the DaemonSet's live pod there (asserting at most one per node)."""
    out: dict[str, dict] = {}
    for p in c.get("pods", "-n", NS, "-l", f"name={DS}")["items"]:
        if p["metadata"].get("deletionTimestamp"):
            continue
        node = p["spec"].get("nodeName")
        assert node not in out, f"two daemon pods on {node}"
        out[node] = p
    return out


def _ready(p: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in p.get("status", {}).get("conditions") or [])


def _on_nodes(c: Cluster, nodes: set[str], timeout: float = 90) -> dict[str, dict]:
    def cond() -> dict[str, dict] | None:
        pods = _ds_pods(c)
        return pods if set(pods) == nodes and all(_ready(p) for p in pods.values()) else None
    return c.wait(f"one ready daemon pod on each of {sorted(nodes)}", cond, timeout)


def test_daemonset_follows_nodes_joining_and_leaving(cluster: Cluster) -> None:
    c = cluster
    c.kubectl("apply", "-f", "-", input=WEB_DEPLOYMENT + "---" + WEB_SERVICE)
    c.kubectl("create", "-f", "-", input=FLUENTD)
    pods = _on_nodes(c, {"node-1", "node-2"})
    c.kubectl("rollout", "status", f"ds/{DS}", "-n", NS, "--timeout=60s")
    ds = c.get("ds", DS, "-n", NS)
    assert ds["spec"]["updateStrategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert ds["status"]["desiredNumberScheduled"] == 2 == ds["status"]["numberReady"]
    tolerated = {t["key"] for t in pods["node-1"]["spec"]["tolerations"]}
    assert {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable",
            "node.kubernetes.io/unschedulable"} <= tolerated

    out = c.knet("node", "add", "n3", "--state-dir", str(c.state_dir), timeout=150)
    assert "node n3: joined and Ready" in out.stdout
    nodes = c.get("nodes")["items"]
    n3 = next(n for n in nodes if n["metadata"]["name"] == "n3")
    assert n3["spec"]["podCIDR"] == "10.244.3.0/24"
    pods = _on_nodes(c, {"node-1", "node-2", "n3"})
    assert pods["n3"]["status"]["podIP"].startswith("10.244.3.")
    assert "n3" in c.knet("status", "--state-dir", str(c.state_dir)).stdout
    # the new node's pod reaches a pod on node-1 (host-gw routes both ways) and a Service
    web = c.ready_pods("app=web", 3)
    target = next(p for p in web if p["spec"]["nodeName"] == "node-1")
    probe = pods["n3"]["metadata"]["name"]
    got = c.kubectl("exec", "-n", NS, probe, "--", "curl", "-s", "-m", "5",
                    f"http://{target['status']['podIP']}/").stdout
    assert f"Hostname: {target['metadata']['name']}" in got
    got = c.kubectl("exec", "-n", NS, probe, "--", "curl", "-s", "-m", "5",
                    "http://web.default.svc.cluster.local/").stdout
    assert "Hostname: web-" in got

    out = c.knet("node", "add", "n3", "--state-dir", str(c.state_dir), check=False)
    assert out.returncode == 1 and "node n3: already in this cluster" in out.stderr
    out = c.knet("node", "remove", "nope", "--state-dir", str(c.state_dir), check=False)
    assert out.returncode == 1 and "node nope: no such node in this cluster" in out.stderr

    c.knet("node", "remove", "n3", "--state-dir", str(c.state_dir), timeout=120)
    names = {n["metadata"]["name"] for n in c.get("nodes")["items"]}
    assert names == {"node-1", "node-2"}
    _on_nodes(c, {"node-1", "node-2"})
    c.wait("the pod of n3 gone", lambda: not any(
        p["spec"].get("nodeName") == "n3" for p in c.get("pods", "-A")["items"]), 60)
    assert "n3" not in c.knet("status", "--state-dir", str(c.state_dir)).stdout
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                           check=True).stdout
    assert "knet-n3" not in netns


def test_rolling_update_history_and_undo(cluster: Cluster) -> None:
    c = cluster
    before = _on_nodes(c, {"node-1", "node-2"})
    c.kubectl("set", "env", f"ds/{DS}", "-n", NS, "ROLL=2")
    c.kubectl("rollout", "status", f"ds/{DS}", "-n", NS, "--timeout=120s", timeout=150)
    after = _on_nodes(c, {"node-1", "node-2"})
    for node, pod in after.items():
        assert pod["metadata"]["uid"] != before[node]["metadata"]["uid"]
        assert {"name": "ROLL", "value": "2"} in pod["spec"]["containers"][0]["env"]
    history = c.kubectl("rollout", "history", f"ds/{DS}", "-n", NS).stdout
    assert [ln.split()[0] for ln in history.splitlines()[2:] if ln.strip()] == ["1", "2"]
    c.kubectl("rollout", "undo", f"ds/{DS}", "-n", NS)
    c.kubectl("rollout", "status", f"ds/{DS}", "-n", NS, "--timeout=120s", timeout=150)
    undone = _on_nodes(c, {"node-1", "node-2"})
    assert all(not p["spec"]["containers"][0].get("env") for p in undone.values())
    revs = c.get("controllerrevisions", "-n", NS, "-l", f"name={DS}")["items"]
    assert sorted(r["revision"] for r in revs) == [2, 3]


GUARDED = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: guarded}
spec:
  replicas: 2
  selector: {matchLabels: {app: guarded}}
  template:
    metadata: {labels: {app: guarded}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: whoami
        image: knet/whoami
        ports: [{containerPort: 80, name: http}]
        readinessProbe: {httpGet: {path: /health, port: http}, periodSeconds: 1}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: guarded}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: guarded}}
"""


def test_drain_waits_for_the_disruption_budget(cluster: Cluster, tmp_path: Path) -> None:
    c = cluster
    c.kubectl("apply", "-f", "-", input=GUARDED)
    pods = c.ready_pods("app=guarded", 2)
    assert {p["spec"]["nodeName"] for p in pods} == {"node-1", "node-2"}
    c.wait("PDB status", lambda: c.get("pdb", "guarded").get("status", {}).get(
        "currentHealthy") == 2, 30)
    pdb = c.get("pdb", "guarded")["status"]
    assert pdb["disruptionsAllowed"] == 0 and pdb["desiredHealthy"] == 2
    guarded_on_2 = next(p for p in pods if p["spec"]["nodeName"] == "node-2")
    log = tmp_path / "drain.log"
    with log.open("w") as f:
        drain = subprocess.Popen(
            ["kubectl", "--kubeconfig", str(c.kubeconfig), "--cache-dir", str(c.cache_dir),
             "drain", "node-2", "--ignore-daemonsets", "--delete-emptydir-data",
             "--timeout=150s"], stdout=f, stderr=subprocess.STDOUT, text=True)
    try:
        blocked = "Cannot evict pod as it would violate the pod's disruption budget."
        c.wait("drain blocked by the PDB", lambda: blocked in log.read_text(), 60)
        assert c.get("node", "node-2")["spec"].get("unschedulable") is True
        still = c.get("pod", guarded_on_2["metadata"]["name"])
        assert not still["metadata"].get("deletionTimestamp")
        time.sleep(3)
        assert drain.poll() is None, log.read_text()
        c.kubectl("scale", "deploy/guarded", "--replicas=3")   # the new one lands on node-1
        assert drain.wait(timeout=150) == 0, log.read_text()
    finally:
        if drain.poll() is None:
            drain.kill()
    text = log.read_text()
    assert "node/node-2 drained" in text and "ignoring DaemonSet-managed Pods" in text
    left = [p for p in c.get("pods", "-A", "--field-selector", "spec.nodeName=node-2")["items"]
            if not p["metadata"].get("deletionTimestamp")]
    assert {p["metadata"]["labels"].get("name") for p in left} == {DS}, json.dumps(
        [p["metadata"]["name"] for p in left])
    evicted = c.kubectl("get", "pod", guarded_on_2["metadata"]["name"], check=False)
    assert evicted.returncode != 0
    c.ready_pods("app=guarded", 3)
    c.kubectl("uncordon", "node-2")


def test_down_removes_a_node_added_and_left_running(cluster: Cluster) -> None:
    """Left for `knet down` (the fixture checks that the host is as before): recorded, so
    removed like the nodes `up` made."""
    c = cluster
    c.knet("node", "add", "--state-dir", str(cluster.state_dir), timeout=150)
    rec = json.loads((c.state_dir / "cluster.json").read_text())
    assert rec["node_map"] == {"node-1": 1, "node-2": 2, "node-3": 3}
    assert {"node-3", "kube-proxy-node-3"} <= set(rec["procs"])
    _on_nodes(c, {"node-1", "node-2", "node-3"})
