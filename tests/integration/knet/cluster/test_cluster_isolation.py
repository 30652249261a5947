"""Issue 10 end to end with the real kubectl: what a pod sees of the host. Each test is a
finding reproduced on the old runtime (pods shared the host's file system and PID
namespace): the admin token, /root, the host's /tmp through `kubectl cp`, every process in
`ps`, another namespace's devices in /sys; plus limits and securityContext as kubectl shows
them (OOMKilled 137, CreateContainerConfigError, runAsUser, read-only root)."""

from __future__ import annotations

import os
from pathlib import Path

from clusterkit import Cluster

PODS = """
apiVersion: v1
kind: Pod
metadata: {name: box}
spec:
  containers:
  - {name: c, image: busybox, command: ["sleep", "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: shared}
spec:
  shareProcessNamespace: true
  containers:
  - {name: a, image: busybox, command: ["sleep", "3601"]}
  - {name: b, image: busybox, command: ["sleep", "3602"]}
---
apiVersion: v1
kind: Pod
metadata: {name: user}
spec:
  restartPolicy: Never
  securityContext: {runAsUser: 1000, runAsGroup: 3000}
  containers:
  - name: c
    image: busybox
    command: ["sh", "-c", "id -u; id -g; touch /etc/x 2>&1; touch /tmp/y && echo tmp-ok"]
    securityContext: {readOnlyRootFilesystem: true}
---
apiVersion: v1
kind: Pod
metadata: {name: nonroot}
spec:
  securityContext: {runAsNonRoot: true}
  containers:
  - {name: c, image: busybox, command: ["sleep", "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: hog}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: busybox
    command: ["python3", "-c", "x = []\\nwhile True: x.append(bytearray(1 << 20))"]
    resources: {limits: {memory: 48Mi}}
"""


def _phase(c: Cluster, name: str) -> str:
    return str(c.get("pod", name)["status"].get("phase"))


def test_pods_see_their_own_world(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=PODS)
    cluster.wait("box running", lambda: _phase(cluster, "box") == "Running")
    token = cluster.state_dir / "token"
    assert token.exists()
    for path in (str(token), "/var/lib/knet/token"):
        r = cluster.exec("box", "cat", path, check=False)
        assert r.returncode != 0 and "No such file or directory" in r.stderr, r
    assert cluster.exec("box", "ls", "/root").stdout == ""
    procs = cluster.exec("box", "ps", "-e", "-o", "pid=,args=").stdout.splitlines()
    assert [p.split(None, 1)[1] for p in procs[1:]] == ["sleep 3600", "ps -e -o pid=,args="]
    assert cluster.exec("box", "ls", "/sys/class/net").stdout.split() == ["eth0", "lo"]


def test_kubectl_cp_lands_in_the_pod_not_on_the_host(cluster: Cluster, tmp_path: Path) -> None:
    cluster.wait("box running", lambda: _phase(cluster, "box") == "Running")
    name = f"knet-cp-{os.getpid()}.txt"
    src = tmp_path / name
    src.write_text("copied into the pod\n")
    assert not Path("/tmp", name).exists()
    cluster.kubectl("cp", str(src), f"box:/tmp/{name}")
    assert not Path("/tmp", name).exists()  # not the host's /tmp
    assert cluster.exec("box", "cat", f"/tmp/{name}").stdout == "copied into the pod\n"
    back = tmp_path / "back.txt"
    cluster.kubectl("cp", f"box:/tmp/{name}", str(back))
    assert back.read_text() == "copied into the pod\n"


def test_share_process_namespace(cluster: Cluster) -> None:
    cluster.wait("shared running", lambda: _phase(cluster, "shared") == "Running")
    out = cluster.kubectl("exec", "shared", "-c", "b", "--", "ps", "-e", "-o",
                          "pid=,args=").stdout
    assert "sleep 3601" in out and "sleep 3602" in out and "pause" in out.splitlines()[0]
    own = cluster.exec("box", "ps", "-e", "-o", "args=").stdout
    assert "sleep 3601" not in own


def test_security_context_as_kubectl_shows_it(cluster: Cluster) -> None:
    cluster.wait("user done", lambda: _phase(cluster, "user") == "Succeeded")
    log = cluster.kubectl("logs", "user").stdout.splitlines()
    assert log[:2] == ["1000", "3000"] and "Read-only file system" in log[2]
    assert log[-1] == "tmp-ok"

    def refused() -> dict | None:
        st = (cluster.get("pod", "nonroot")["status"].get("containerStatuses") or [{}])[0]
        return st.get("state", {}).get("waiting")
    waiting = cluster.wait("nonroot refused", refused)
    assert waiting["reason"] == "CreateContainerConfigError"
    assert waiting["message"].startswith("container has runAsNonRoot and image will run as root")
    assert "CreateContainerConfigError" in cluster.kubectl("get", "pod", "nonroot").stdout


def test_memory_hog_is_oom_killed(cluster: Cluster) -> None:
    cluster.wait("hog failed", lambda: _phase(cluster, "hog") == "Failed", timeout=90)
    term = cluster.get("pod", "hog")["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["reason"] == "OOMKilled" and term["exitCode"] == 137
    assert "OOMKilled" in cluster.kubectl("get", "pod", "hog").stdout
    assert "OOMKilled" in cluster.kubectl("describe", "pod", "hog").stdout
