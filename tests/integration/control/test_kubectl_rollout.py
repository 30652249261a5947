"""`kubectl rollout` against `knet control` with two simulated nodes (simnodes.py): status,
history, undo (previous and --to-revision), restart, pause/resume, scale, and delete of a
Deployment cascading to its ReplicaSets and pods. Real kubectl, fresh --cache-dir per test."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from simnodes import SimNodes, start_control

KUBECTL = "/usr/bin/kubectl"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    state = tmp_path_factory.mktemp("rollout")
    with start_control(state) as kubeconfig, SimNodes(kubeconfig):
        yield kubeconfig


class Kubectl:
    def __init__(self, kubeconfig: Path, cache: Path, namespace: str) -> None:
        self.base = [KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache),
                     "-n", namespace]

    def run(self, *args: str, input: str | None = None, check: bool = True,
            timeout: float = 90) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(self.base + list(args), input=input, capture_output=True,
                             text=True, timeout=timeout)
        if check and out.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({out.returncode}): "
                                 f"{out.stderr}{out.stdout}")
        return out

    def __call__(self, *args: str, input: str | None = None) -> str:
        return self.run(*args, input=input).stdout

    def json(self, *args: str) -> dict:
        return json.loads(self(*args, "-o", "json"))

    def eventually(self, check, *, timeout: float = 30, what: str = ""):
        deadline = time.monotonic() + timeout
        while True:
            got = check()
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out: {what}; last {got!r}")
            time.sleep(0.3)


@pytest.fixture
def kubectl(cluster: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Kubectl:
    ns = "r-" + request.node.name.removeprefix("test_").replace("_", "-")[:40]
    k = Kubectl(cluster, tmp_path / "cache", ns)
    k("create", "namespace", ns)
    return k


def deployment(name: str = "web", *, image: str = "nginx:1", replicas: int = 3,
               **spec) -> str:
    labels = {"app": name}
    return yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "strategy": {"type": "RollingUpdate",
                              "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                 "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                     {"name": "web", "image": image, "ports": [{"containerPort": 80}]}]}},
                 **spec}})


def images(k: Kubectl, selector: str = "app=web") -> set[str]:
    pods = k.json("get", "pods", "-l", selector)["items"]
    return {p["spec"]["containers"][0]["image"] for p in pods
            if not p["metadata"].get("deletionTimestamp")}


def rollout_ok(k: Kubectl, name: str = "web") -> str:
    out = k("rollout", "status", f"deployment/{name}", "--timeout=60s")
    assert f'deployment "{name}" successfully rolled out' in out, out
    return out


def roll_to(k: Kubectl, image: str, cause: str | None = None) -> None:
    k("set", "image", "deployment/web", f"web={image}")
    if cause:
        k("annotate", "deployment/web", f"kubernetes.io/change-cause={cause}", "--overwrite")
    rollout_ok(k)


def test_rollout_status_and_history(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", input=deployment())
    kubectl("annotate", "deployment/web", "kubernetes.io/change-cause=first release")
    rollout_ok(kubectl)
    pods = kubectl.json("get", "pods", "-l", "app=web")["items"]
    assert len(pods) == 3 and all(p["status"]["phase"] == "Running" for p in pods)
    assert {p["spec"]["nodeName"] for p in pods} == {"node-1", "node-2"}   # spread
    roll_to(kubectl, "nginx:2", "bump to 2")
    assert images(kubectl) == {"nginx:2"}
    history = kubectl("rollout", "history", "deployment/web")
    lines = [line.split(None, 1) for line in history.splitlines()[2:] if line.strip()]
    assert lines[0] == ["1", "first release"] and lines[1][0] == "2", history
    rev2 = kubectl("rollout", "history", "deployment/web", "--revision=2")
    assert "nginx:2" in rev2
    events = kubectl("get", "events", "--field-selector", "reason=ScalingReplicaSet")
    assert "Scaled up replica set web-" in events


def test_rollout_undo_and_to_revision(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", input=deployment(replicas=2))
    rollout_ok(kubectl)
    rs1 = {r["metadata"]["name"] for r in kubectl.json("get", "rs", "-l", "app=web")["items"]}
    roll_to(kubectl, "nginx:2")
    out = kubectl("rollout", "undo", "deployment/web")
    assert "rolled back" in out
    rollout_ok(kubectl)
    assert images(kubectl) == {"nginx:1"}
    rss = kubectl.json("get", "rs", "-l", "app=web")["items"]
    assert len(rss) == 2, [r["metadata"]["name"] for r in rss]       # the old RS was reused
    live = [r for r in rss if r["spec"]["replicas"] == 2]
    assert {r["metadata"]["name"] for r in live} == rs1
    assert live[0]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    kubectl("rollout", "undo", "deployment/web", "--to-revision=2")
    rollout_ok(kubectl)
    assert images(kubectl) == {"nginx:2"}
    d = kubectl.json("get", "deployment", "web")
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "4"


def test_rollout_restart(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", input=deployment(replicas=2))
    rollout_ok(kubectl)
    before = {p["metadata"]["name"] for p in kubectl.json("get", "pods", "-l", "app=web")["items"]}
    assert "restarted" in kubectl("rollout", "restart", "deployment/web")
    rollout_ok(kubectl)

    def replaced():
        pods = kubectl.json("get", "pods", "-l", "app=web")["items"]
        names = {p["metadata"]["name"] for p in pods}
        return pods if len(pods) == 2 and not names & before else None
    pods = kubectl.eventually(replaced, what="all pods replaced by the restart")
    assert all("kubectl.kubernetes.io/restartedAt" in p["metadata"]["annotations"] for p in pods)


def test_rollout_pause_and_resume(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", input=deployment(replicas=2))
    rollout_ok(kubectl)
    kubectl("rollout", "pause", "deployment/web")
    kubectl("set", "image", "deployment/web", "web=nginx:2")
    time.sleep(3)
    assert len(kubectl.json("get", "rs", "-l", "app=web")["items"]) == 1
    assert images(kubectl) == {"nginx:1"}
    d = kubectl.json("get", "deployment", "web")
    progressing = [c for c in d["status"]["conditions"] if c["type"] == "Progressing"][0]
    assert progressing["reason"] == "DeploymentPaused"
    kubectl("rollout", "resume", "deployment/web")
    rollout_ok(kubectl)
    assert images(kubectl) == {"nginx:2"}


def test_scale(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", input=deployment(replicas=1))
    rollout_ok(kubectl)
    kubectl("scale", "deployment/web", "--replicas=4")
    rollout_ok(kubectl)
    pods = kubectl.json("get", "pods", "-l", "app=web")["items"]
    assert len(pods) == 4
    nodes = [p["spec"]["nodeName"] for p in pods]
    assert sorted(nodes) == ["node-1", "node-1", "node-2", "node-2"]
    kubectl("scale", "deployment/web", "--replicas=1")
    kubectl.eventually(lambda: len(kubectl.json("get", "pods", "-l", "app=web")["items"]) == 1,
                       what="scaled down to 1 pod")
    d = kubectl.json("get", "deployment", "web")
    assert d["status"]["replicas"] == 1 and d["status"]["availableReplicas"] == 1


def test_delete_cascades_to_replicasets_and_pods(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", input=deployment(replicas=2))
    rollout_ok(kubectl)
    assert kubectl.json("get", "rs", "-l", "app=web")["items"]
    kubectl("delete", "deployment", "web", "--timeout=60s")

    def all_gone():
        rs = kubectl.json("get", "rs", "-l", "app=web")["items"]
        pods = kubectl.json("get", "pods", "-l", "app=web")["items"]
        return not rs and not pods
    kubectl.eventually(all_gone, what="ReplicaSets and pods collected")


def test_delete_foreground_and_orphan(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", input=deployment(replicas=2))
    rollout_ok(kubectl)
    # orphan: the ReplicaSet and pods stay, without an owner
    kubectl("delete", "deployment", "web", "--cascade=orphan", "--timeout=60s")
    rs = kubectl.json("get", "rs", "-l", "app=web")["items"]
    assert len(rs) == 1 and not rs[0]["metadata"].get("ownerReferences")
    assert len(kubectl.json("get", "pods", "-l", "app=web")["items"]) == 2
    # a new Deployment adopts the orphaned ReplicaSet (same template): no new pods
    kubectl("apply", "-f", "-", input=deployment(replicas=2))
    rollout_ok(kubectl)
    rs2 = kubectl.json("get", "rs", "-l", "app=web")["items"]
    assert [r["metadata"]["name"] for r in rs2] == [rs[0]["metadata"]["name"]]
    assert rs2[0]["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    # foreground: kubectl waits until the dependents are gone, then the Deployment
    kubectl("delete", "deployment", "web", "--cascade=foreground", "--timeout=60s")
    kubectl.eventually(lambda: not kubectl.json("get", "pods,rs", "-l", "app=web")["items"],
                       what="foreground deletion removed pods and ReplicaSets")
    assert "NotFound" in kubectl.run("get", "deployment", "web", check=False).stderr
