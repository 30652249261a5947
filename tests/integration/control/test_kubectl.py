"""The real kubectl (and the official Python client) against `knet control`, started as a
subprocess on a free loopback port, one row of docs/kubectl.md at a time. Each test uses
its own namespace and a fresh `--cache-dir`, so discovery is really fetched."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from simnodes import start_control

KUBECTL = "/usr/bin/kubectl"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    state = tmp_path_factory.mktemp("control")
    with start_control(state):
        yield state


class Kubectl:
    def __init__(self, state: Path, cache: Path, namespace: str) -> None:
        self.base = [KUBECTL, "--kubeconfig", str(state / "kubeconfig"), "--cache-dir",
                     str(cache), "-n", namespace]
        self.namespace = namespace

    def run(self, *args: str, input: str | None = None, check: bool = True,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(self.base + list(args), input=input, capture_output=True,
                             text=True, timeout=timeout, check=False)
        if check and out.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {out.stderr}")
        return out

    def __call__(self, *args: str, input: str | None = None) -> str:
        return self.run(*args, input=input).stdout

    def json(self, *args: str) -> dict:
        return json.loads(self(*args, "-o", "json"))


@pytest.fixture
def kubectl(server: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Kubectl:
    ns = "t-" + request.node.name.removeprefix("test_").replace("_", "-")[:40]
    k = Kubectl(server, tmp_path / "cache", ns)
    k("create", "namespace", ns)
    return k


def manifest(*docs: dict) -> str:
    return yaml.safe_dump_all(docs)


def deployment(name: str, *, env: str = "1", replicas: int = 2) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                         {"name": "web", "image": "nginx", "ports": [{"containerPort": 80}],
                          "env": [{"name": "A", "value": env}]}]}}}}


def service(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": "NodePort", "selector": {"app": name},
                     "ports": [{"port": 80, "targetPort": 80}]}}


def pod(name: str, **labels: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "knet/whoami"}]}}


def test_version_and_api_resources(kubectl: Kubectl) -> None:
    version = json.loads(kubectl("version", "-o", "json"))
    assert version["serverVersion"]["minor"] == "32"
    resources = kubectl("api-resources")
    assert "deployments" in resources and "deploy" in resources


def test_create_and_duplicate(kubectl: Kubectl, tmp_path: Path) -> None:
    f = tmp_path / "app.yaml"
    f.write_text(manifest(deployment("web"), service("web")))
    out = kubectl("create", "-f", str(f))
    assert "deployment.apps/web created" in out and "service/web created" in out
    again = kubectl.run("create", "-f", str(f), check=False)
    assert again.returncode != 0 and "AlreadyExists" in again.stderr
    gen = pod("")
    gen["metadata"] = {"generateName": "gen-"}
    name = kubectl("create", "-f", "-", "-o", "name", input=manifest(gen)).strip()
    assert name.startswith("pod/gen-") and len(name) == len("pod/gen-") + 5


def test_apply_twice_then_edit(kubectl: Kubectl, tmp_path: Path) -> None:
    f = tmp_path / "app.yaml"
    f.write_text(manifest(deployment("web"), service("web")))
    assert "deployment.apps/web created" in kubectl("apply", "-f", str(f))
    second = kubectl("apply", "-f", str(f))
    assert "deployment.apps/web unchanged" in second and "service/web unchanged" in second
    svc = kubectl.json("get", "svc", "web")
    f.write_text(manifest(deployment("web", env="2"), service("web")))
    assert "deployment.apps/web configured" in kubectl("apply", "-f", str(f))
    d = kubectl.json("get", "deploy", "web")
    container = d["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == [{"name": "A", "value": "2"}]
    assert container["ports"][0]["containerPort"] == 80
    assert d["metadata"]["generation"] == 2
    assert "kubectl.kubernetes.io/last-applied-configuration" in d["metadata"]["annotations"]
    assert kubectl.json("get", "svc", "web")["spec"]["clusterIP"] == svc["spec"]["clusterIP"]


def test_apply_server_side(kubectl: Kubectl) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
          "data": {"a": "1"}}
    assert "serverside-applied" in kubectl("apply", "--server-side", "-f", "-",
                                           input=manifest(cm))
    cm["data"] = {"a": "2"}
    kubectl("apply", "--server-side", "-f", "-", input=manifest(cm))
    assert kubectl.json("get", "cm", "cfg")["data"]["a"] == "2"


def test_apply_prune_removes_what_the_manifest_dropped(kubectl: Kubectl) -> None:
    """`kubectl apply --prune -l` walks kubectl's default prune list (PVCs, PVs, Jobs,
    StatefulSets, Ingresses ...): every kind must be served, or kubectl gives up with
    'error retrieving RESTMappings to prune'."""
    cms = [{"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": n, "labels": {"app": "p"}}} for n in ("a", "b")]
    kubectl("apply", "--prune", "-l", "app=p", "-f", "-", input=manifest(*cms))
    out = kubectl("apply", "--prune", "-l", "app=p", "-f", "-", input=manifest(cms[0]))
    assert "configmap/a unchanged" in out and "configmap/b pruned" in out, out
    assert kubectl("get", "cm", "-l", "app=p", "-o", "name").split() == ["configmap/a"]


def test_get_output_formats(kubectl: Kubectl) -> None:
    kubectl("create", "-f", "-", input=manifest(pod("p1", app="a"), pod("p2", app="b")))
    table = kubectl("get", "pods")
    assert table.splitlines()[0].split()[0] == "NAME" and "p1" in table and "p2" in table
    wide = kubectl("get", "pods", "-o", "wide")
    assert "p1" in wide
    assert yaml.safe_load(kubectl("get", "pod", "p1", "-o", "yaml"))["metadata"]["name"] == "p1"
    listed = kubectl.json("get", "pods")
    assert sorted(p["metadata"]["name"] for p in listed["items"]) == ["p1", "p2"]
    assert kubectl("get", "pods", "-o", "name").split() == ["pod/p1", "pod/p2"]
    everywhere = kubectl("get", "pods", "-A")
    assert kubectl.namespace in everywhere and "NAMESPACE" in everywhere.splitlines()[0]
    assert "kubernetes" in kubectl("get", "all", "-n", "default")


def test_selectors(kubectl: Kubectl) -> None:
    kubectl("create", "-f", "-", input=manifest(pod("p1", app="a"), pod("p2", app="b"),
                                                 pod("p3")))
    assert kubectl("get", "pods", "-l", "app=a", "-o", "name").split() == ["pod/p1"]
    assert kubectl("get", "pods", "-l", "app!=a", "-o", "name").split() == ["pod/p2", "pod/p3"]
    assert kubectl("get", "pods", "-l", "app in (a,b)", "-o", "name").split() == [
        "pod/p1", "pod/p2"]
    assert kubectl("get", "pods", "-l", "!app", "-o", "name").split() == ["pod/p3"]
    assert kubectl("get", "pods", "--field-selector", "metadata.name!=p1,status.phase=Pending",
                   "-o", "name").split() == ["pod/p2", "pod/p3"]


def test_get_watch(kubectl: Kubectl) -> None:
    kubectl("create", "-f", "-", input=manifest(pod("first")))
    watcher = subprocess.Popen(kubectl.base + ["get", "pods", "-w", "-o", "name",
                                               "--request-timeout", "5s"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        kubectl("create", "-f", "-", input=manifest(pod("second")))
        kubectl("label", "pod", "first", "seen=yes")
        out, _ = watcher.communicate(timeout=15)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    lines = out.split()
    assert lines[0] == "pod/first" and "pod/second" in lines
    assert lines.count("pod/first") >= 2             # the initial state and the label change


def test_label_and_annotate(kubectl: Kubectl) -> None:
    kubectl("create", "-f", "-", input=manifest(pod("p", app="a")))
    assert "labeled" in kubectl("label", "pod", "p", "tier=web")
    kubectl("annotate", "pod", "p", "note=hello")
    md = kubectl.json("get", "pod", "p")["metadata"]
    assert md["labels"] == {"app": "a", "tier": "web"} and md["annotations"]["note"] == "hello"
    kubectl("label", "pod", "p", "tier-")
    kubectl("annotate", "pod", "p", "note-")
    md = kubectl.json("get", "pod", "p")["metadata"]
    assert md["labels"] == {"app": "a"} and "note" not in (md.get("annotations") or {})
    clash = kubectl.run("label", "pod", "p", "app=b", check=False)
    assert clash.returncode != 0 and "--overwrite" in clash.stderr


def test_scale(kubectl: Kubectl) -> None:
    kubectl("create", "-f", "-", input=manifest(deployment("web", replicas=2)))
    assert "scaled" in kubectl("scale", "deploy", "web", "--replicas=4")
    assert kubectl.json("get", "deploy", "web")["spec"]["replicas"] == 4
    kubectl("scale", "deploy", "web", "--current-replicas=4", "--replicas=1")
    assert kubectl.json("get", "deploy", "web")["spec"]["replicas"] == 1
    stale = kubectl.run("scale", "deploy", "web", "--current-replicas=7", "--replicas=3",
                        check=False)
    assert stale.returncode != 0
    assert kubectl.json("get", "deploy", "web")["spec"]["replicas"] == 1


def test_describe(kubectl: Kubectl) -> None:
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": f"node-{kubectl.namespace}",
                         "labels": {"kubernetes.io/hostname": "node-x"}}}
    kubectl("create", "-f", "-", input=manifest(node, pod("p", app="web"),
                                                 deployment("web"), service("web")))
    described = kubectl("describe", "pod", "p")
    assert "Name:" in described and "p" in described and kubectl.namespace in described
    assert "Selector:" in kubectl("describe", "deploy", "web")
    svc = kubectl("describe", "svc", "web")
    assert "NodePort:" in svc and "IP:" in svc
    assert f"node-{kubectl.namespace}" in kubectl("describe", "node",
                                                  f"node-{kubectl.namespace}")


def test_delete(kubectl: Kubectl, tmp_path: Path) -> None:
    f = tmp_path / "app.yaml"
    f.write_text(manifest(deployment("web"), service("web")))
    kubectl("apply", "-f", str(f))
    kubectl("create", "-f", "-", input=manifest(pod("p")))
    assert 'pod "p" deleted' in kubectl("delete", "pod", "p")
    out = kubectl("delete", "-f", str(f))
    assert 'deployment.apps "web" deleted' in out and 'service "web" deleted' in out
    gone = kubectl.run("get", "deploy", "web", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_delete_namespace(kubectl: Kubectl) -> None:
    kubectl("create", "-f", "-", input=manifest(pod("p")))
    kubectl("create", "configmap", "c", "--from-literal=a=b")
    ns = kubectl.namespace
    assert f'namespace "{ns}" deleted' in kubectl("delete", "namespace", ns, "--timeout=20s")
    assert kubectl.run("get", "namespace", ns, check=False).returncode != 0


def test_python_client_lists_and_watches(kubectl: Kubectl, server: Path) -> None:
    from kubernetes import client, config, watch

    api = client.CoreV1Api(config.new_client_from_config(str(server / "kubeconfig")))
    kubectl("create", "-f", "-", input=manifest(pod("a", app="py")))
    pods = api.list_namespaced_pod(kubectl.namespace, label_selector="app=py")
    assert [p.metadata.name for p in pods.items] == ["a"]
    rv = pods.metadata.resource_version
    kubectl("create", "-f", "-", input=manifest(pod("b", app="py")))
    w = watch.Watch()
    seen = []
    for event in w.stream(api.list_namespaced_pod, kubectl.namespace, resource_version=rv,
                          label_selector="app=py", timeout_seconds=5):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 1:
            w.stop()
    assert seen == [("ADDED", "b")]
    assert api.read_namespaced_pod("a", kubectl.namespace).status.phase == "Pending"


def test_unauthorized_kubectl(server: Path, tmp_path: Path) -> None:
    cfg = yaml.safe_load((server / "kubeconfig").read_text())
    cfg["users"][0]["user"]["token"] = "wrong"
    bad = tmp_path / "kubeconfig"
    bad.write_text(yaml.safe_dump(cfg))
    out = subprocess.run([KUBECTL, "--kubeconfig", str(bad), "--cache-dir",
                          str(tmp_path / "c"), "get", "pods"], capture_output=True, text=True,
                         timeout=30, check=False)
    assert out.returncode != 0 and "Unauthorized" in out.stderr + out.stdout or \
        "credentials" in out.stderr
    assert os.stat(server / "kubeconfig").st_mode & 0o077 == 0


def test_typed_generators_send_protobuf(kubectl: Kubectl) -> None:
    """`kubectl create deployment|service|configmap|secret|job` post protobuf bodies."""
    kubectl("create", "deployment", "web", "--image=nginx", "--port=80", "--replicas=2")
    d = kubectl.json("get", "deploy", "web")
    assert d["spec"]["replicas"] == 2 and d["spec"]["selector"]["matchLabels"] == {"app": "web"}
    kubectl("create", "service", "nodeport", "web", "--tcp=80:http", "--node-port=30081")
    svc = kubectl.json("get", "svc", "web")
    assert svc["spec"]["ports"][0]["nodePort"] == 30081 and svc["spec"]["clusterIP"]
    kubectl("create", "configmap", "cfg", "--from-literal=a=b")
    assert kubectl.json("get", "cm", "cfg")["data"] == {"a": "b"}
    kubectl("create", "secret", "generic", "s", "--from-literal=p=q")
    secret = kubectl.json("get", "secret", "s")
    assert secret["type"] == "Opaque" and secret["data"] == {"p": "cQ=="}
    kubectl("create", "job", "once", "--image=busybox", "--", "true")
    job = kubectl.json("get", "job", "once")
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["true"]
    clash = kubectl.run("create", "service", "nodeport", "other", "--tcp=80:http",
                        "--node-port=30081", check=False)
    assert clash.returncode != 0 and "provided port is already allocated" in clash.stderr
