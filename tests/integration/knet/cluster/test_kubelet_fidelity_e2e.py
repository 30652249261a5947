"""The kubelet as the official tasks show it, with the real kubectl 1.32: `kubectl logs` with
--since, --since-time, --limit-bytes, --tail and --timestamps (and -f with them); postStart
hooks ("Attach Handlers to Container Lifecycle Events"), a failing one killing the container
with FailedPostStartHook; `kubectl set image pod/...` restarting that container; gRPC
readiness probes ("Configure Liveness, Readiness and Startup Probes", gRPC) against a real
HTTP/2 health server in the pod."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from clusterkit import Cluster

GRPC_SERVER = Path(__file__).parents[3] / "unit/knet/kubelet/grpc_health_server.py"
PODS = f"""
apiVersion: v1
kind: Pod
metadata: {{name: ticker}}
spec:
  containers:
  - name: c
    image: busybox
    command: ["sh", "-c", "i=0; while :; do echo line-$i; i=$((i+1)); sleep 0.2; done"]
---
apiVersion: v1
kind: Pod
metadata: {{name: hooked}}
spec:
  containers:
  - name: c
    image: busybox:1.36
    command: ["sleep", "3600"]
    lifecycle:
      postStart: {{exec: {{command: ["sh", "-c", "echo started by the hook > /tmp/hook"]}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: badhook}}
spec:
  containers:
  - name: c
    image: busybox
    command: ["sleep", "3600"]
    lifecycle:
      postStart: {{exec: {{command: ["sh", "-c", "echo no way; exit 3"]}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: grpc-ok}}
spec:
  containers:
  - name: c
    image: python
    command: ["python3", "{GRPC_SERVER}", "9000", "=SERVING"]
    readinessProbe: {{grpc: {{port: 9000}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Pod
metadata: {{name: grpc-sick}}
spec:
  containers:
  - name: c
    image: python
    command: ["python3", "{GRPC_SERVER}", "9000", "=SERVING", "db=NOT_SERVING"]
    readinessProbe: {{grpc: {{port: 9000, service: db}}, periodSeconds: 1}}
"""


@pytest.fixture(scope="module")
def pods(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=PODS)
    for name in ("ticker", "hooked", "grpc-ok"):
        cluster.wait(f"{name} running", lambda n=name: cluster.get("pod", n)["status"].get(
            "phase") == "Running")
    time.sleep(3)                  # ~15 lines of the ticker


def events(cluster: Cluster, pod: str, reason: str) -> list[str]:
    items = cluster.get("events", "--field-selector",
                        f"involvedObject.name={pod},reason={reason}")["items"]
    return [e["message"] for e in items]


def test_logs_since_limit_bytes_tail_timestamps(cluster: Cluster, pods: None) -> None:
    everything = cluster.kubectl("logs", "ticker").stdout.splitlines()
    assert len(everything) >= 10 and everything[0] == "line-0"
    assert cluster.kubectl("logs", "ticker", "--limit-bytes=10").stdout == "line-0\nlin"
    recent = cluster.kubectl("logs", "ticker", "--since=1s").stdout.splitlines()
    assert 0 < len(recent) <= 8 and recent[0] != "line-0", recent
    since = (datetime.now(UTC) - timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    recent = cluster.kubectl("logs", "ticker", f"--since-time={since}").stdout.splitlines()
    assert 0 < len(recent) < len(everything) + 20 and recent[0] != "line-0", recent
    tail = cluster.kubectl("logs", "ticker", "--tail=3", "--timestamps").stdout.splitlines()
    assert len(tail) == 3
    stamp, text = tail[0].split(" ", 1)
    assert stamp.endswith("Z") and len(stamp) == 30 and text.startswith("line-")
    both = cluster.kubectl("logs", "ticker", "--tail=50", "--since=1s").stdout.splitlines()
    assert 0 < len(both) <= 8
    # follow from a second ago, until 30 bytes came
    out = cluster.kubectl("logs", "-f", "ticker", "--since=1s", "--limit-bytes=30",
                          timeout=20).stdout
    assert len(out) == 30 and not out.startswith("line-0\n")


def test_a_post_start_hook_runs_in_the_container(cluster: Cluster, pods: None) -> None:
    assert cluster.exec("hooked", "cat", "/tmp/hook").stdout == "started by the hook\n"
    assert events(cluster, "hooked", "FailedPostStartHook") == []


def test_a_failing_post_start_hook_kills_the_container(cluster: Cluster, pods: None) -> None:
    failed = cluster.wait("FailedPostStartHook", lambda: events(cluster, "badhook",
                                                                "FailedPostStartHook"))
    uid = cluster.get("pod", "badhook")["metadata"]["uid"]
    assert failed[0] == ('Exec lifecycle hook ([sh -c echo no way; exit 3]) for Container "c" '
                         f'in Pod "badhook_default({uid})" failed - error: command \'sh -c '
                         'echo no way; exit 3\' exited with 3: , message: "no way\\n"')
    assert "FailedPostStartHook" in events(cluster, "badhook", "Killing")
    cluster.wait("a restart", lambda: cluster.get("pod", "badhook")["status"][
        "containerStatuses"][0]["restartCount"] >= 1)


def test_set_image_restarts_that_container(cluster: Cluster, pods: None) -> None:
    cluster.kubectl("set", "image", "pod/hooked", "c=busybox:1.37")
    st = cluster.wait("the restart", lambda: (s := cluster.get("pod", "hooked")["status"][
        "containerStatuses"][0])["restartCount"] == 1 and "running" in s["state"] and s)
    assert st["image"] == "busybox:1.37"
    assert "Container c definition changed, will be restarted" in events(
        cluster, "hooked", "Killing")


def test_grpc_readiness_probes(cluster: Cluster, pods: None) -> None:
    def ready(name: str) -> bool:
        conds = cluster.get("pod", name)["status"].get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)
    cluster.wait("grpc-ok ready", lambda: ready("grpc-ok"))
    why = cluster.wait("grpc-sick's probe failure", lambda: events(cluster, "grpc-sick",
                                                                   "Unhealthy"))
    assert 'Readiness probe failed: service unhealthy (responded with "NOT_SERVING")' in why
    assert not ready("grpc-sick")
