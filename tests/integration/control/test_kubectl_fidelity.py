"""The real kubectl 1.32 against `knet control` with two simulated nodes (simnodes.py), for
the verbs of the official tutorials where knet answered differently from kube-apiserver:
describe of an exposed Service, server-side dry-run, Service type changes, sorting by fields
outside metadata, namespace labels. Fresh --cache-dir per test."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from simnodes import SimNodes, start_control
from test_kubectl_rollout import Kubectl as RolloutKubectl


class Kubectl(RolloutKubectl):
    def __init__(self, kubeconfig: Path, cache: Path, namespace: str) -> None:
        super().__init__(kubeconfig, cache, namespace)
        self.namespace = namespace


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    state = tmp_path_factory.mktemp("fidelity")
    with start_control(state) as kubeconfig, SimNodes(kubeconfig):
        yield kubeconfig


@pytest.fixture
def kubectl(cluster: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Kubectl:
    ns = "f-" + request.node.name.removeprefix("test_").replace("_", "-")[:40]
    k = Kubectl(cluster, tmp_path / "cache", ns)
    k("create", "namespace", ns)
    return k


def test_describe_exposed_service_shows_endpoints(kubectl: Kubectl) -> None:
    """The my-nginx tutorial: `kubectl expose` makes an unnamed port; describe used to
    panic kubectl (nil EndpointSlice port name)."""
    kubectl("create", "deployment", "my-nginx", "--image=nginx", "--replicas=2",
            "--port=80")
    kubectl("expose", "deployment", "my-nginx")

    def two_endpoints() -> bool:
        slices = kubectl.json("get", "endpointslices", "-l",
                              "kubernetes.io/service-name=my-nginx")["items"]
        return sum(len(s.get("endpoints") or []) for s in slices) == 2
    kubectl.eventually(two_endpoints, what="two endpoints in the slices of my-nginx")
    out = kubectl.run("describe", "svc", "my-nginx")
    assert out.returncode == 0 and "panic" not in out.stderr, out.stderr
    endpoints = next(line for line in out.stdout.splitlines() if line.startswith("Endpoints:"))
    assert endpoints.count(":80") == 2, out.stdout


def test_delete_dry_run_server_changes_nothing(kubectl: Kubectl) -> None:
    kubectl("create", "configmap", "cfg", "--from-literal=a=1")
    kubectl("create", "deployment", "web", "--image=nginx", "--replicas=2")
    kubectl.eventually(lambda: len(kubectl.json("get", "pods", "-l", "app=web")["items"]) == 2,
                       what="two pods of web")
    out = kubectl("delete", "cm", "cfg", "--dry-run=server")
    assert out.strip() == 'configmap "cfg" deleted (server dry run)'
    kubectl("delete", "deployment", "web", "--dry-run=server", "--cascade=foreground")
    kubectl("delete", "pods", "--all", "--dry-run=server")
    assert kubectl.json("get", "cm", "cfg")["data"] == {"a": "1"}
    web = kubectl.json("get", "deployment", "web")
    assert "deletionTimestamp" not in web["metadata"] and "finalizers" not in web["metadata"]
    assert len(kubectl.json("get", "rs", "-l", "app=web")["items"]) == 1
    pods = kubectl.json("get", "pods", "-l", "app=web")["items"]
    assert len(pods) == 2 and not any("deletionTimestamp" in p["metadata"] for p in pods)


SERVICE = """apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 3}}
  ports: [{port: 80, targetPort: 8080}]
"""


def test_lab07_affinity_patch_and_service_type_changes(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", "-", input=SERVICE)
    kubectl("patch", "svc", "web", "-p", '{"spec":{"sessionAffinity":"None"}}')
    spec = kubectl.json("get", "svc", "web")["spec"]
    assert spec["sessionAffinity"] == "None" and "sessionAffinityConfig" not in spec
    kubectl("patch", "svc", "web", "-p", '{"spec":{"type":"NodePort"}}')
    port = kubectl.json("get", "svc", "web")["spec"]["ports"][0]["nodePort"]
    assert 30000 <= port <= 32767
    assert f"80:{port}/TCP" in kubectl("get", "svc", "web")
    dup = kubectl.run("create", "service", "nodeport", "other", "--tcp=80",
                      f"--node-port={port}", check=False)
    assert dup.returncode == 1 and (f"spec.ports[0].nodePort: Invalid value: {port}: provided "
                                    "port is already allocated") in dup.stderr
    out = kubectl.run("create", "service", "nodeport", "far", "--tcp=80", "--node-port=40000",
                      check=False)
    assert out.returncode == 1 and (
        "spec.ports[0].nodePort: Invalid value: 40000: provided port is not in the valid "
        "range. The range of valid ports is 30000-32767") in out.stderr
    kubectl("patch", "svc", "web", "-p", '{"spec":{"type":"ClusterIP"}}')
    spec = kubectl.json("get", "svc", "web")["spec"]
    assert "nodePort" not in spec["ports"][0] and "externalTrafficPolicy" not in spec
    kubectl("create", "service", "nodeport", "other", "--tcp=80", f"--node-port={port}")
    assert kubectl.json("get", "svc", "web")["status"] == {"loadBalancer": {}}


def test_namespaces_carry_their_name_label(kubectl: Kubectl) -> None:
    ns = kubectl.namespace
    assert kubectl("get", "ns", "-l", f"kubernetes.io/metadata.name={ns}", "-o",
                   "name").split() == [f"namespace/{ns}"]
    kubectl("label", "ns", ns, "kubernetes.io/metadata.name=other", "--overwrite")
    labels = kubectl.json("get", "ns", ns)["metadata"]["labels"]
    assert labels["kubernetes.io/metadata.name"] == ns
    assert "kubernetes.io/metadata.name=default" in kubectl("get", "ns", "default",
                                                            "--show-labels")


def test_get_sort_by_a_field_outside_metadata(kubectl: Kubectl) -> None:
    for name in ("first", "second"):
        kubectl("run", name, "--image=nginx")
        kubectl.eventually(lambda n=name: kubectl.json("get", "pod", n).get("status", {})
                           .get("startTime"), what=f"{name} running")
        time.sleep(1.1)                   # startTime has a resolution of one second
    table = kubectl("get", "pods", "--sort-by=.status.startTime")      # a Table request
    assert [line.split()[0] for line in table.splitlines()[1:]] == ["first", "second"]
    wide = kubectl("get", "pods", "-o", "wide", "--sort-by=.spec.containers[0].image")
    assert "No resources found" not in wide and len(wide.splitlines()) == 3


NETPOL = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: NAME}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{ipBlock: {cidr: CIDR}}]
"""


def test_ingress_pdb_and_networkpolicy_kinds(kubectl: Kubectl) -> None:
    """kubectl create ingress / pdb send protobuf; apply validates against OpenAPI."""
    kubectl("create", "ingress", "web", "--class=nginx", "--rule=foo.com/*=web:80",
            "--rule=bar.com/api=api:http,tls=sec")
    ing = kubectl.json("get", "ing", "web")
    rules = ing["spec"]["rules"]
    assert rules[0]["http"]["paths"][0] == {"path": "/", "pathType": "Prefix", "backend": {
        "service": {"name": "web", "port": {"number": 80}}}}
    assert rules[1]["http"]["paths"][0]["backend"]["service"]["port"] == {"name": "http"}
    assert ing["spec"]["tls"] == [{"hosts": ["bar.com"], "secretName": "sec"}]
    kubectl("create", "pdb", "web", "--selector=app=web", "--min-available=50%")
    table = kubectl("get", "ing,pdb").splitlines()
    assert table[0].split() == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
    assert table[1].split()[:4] == ["ingress.networking.k8s.io/web", "nginx",
                                    "foo.com,bar.com", "80,"]
    assert "MIN AVAILABLE" in table[3] and table[4].split()[1:4] == ["50%", "N/A", "0"]
    kubectl("apply", "-f", "-", input=NETPOL.replace("NAME", "np").replace("CIDR",
                                                                          "10.0.0.0/8"))
    assert kubectl("get", "netpol", "-o", "name").split() == [
        "networkpolicy.networking.k8s.io/np"]
    bad = kubectl.run("apply", "-f", "-", check=False,
                      input=NETPOL.replace("NAME", "bad").replace("CIDR", "10.0.0.0/33"))
    assert bad.returncode == 1 and ('spec.ingress[0].from[0].ipBlock.cidr: Invalid value: '
                                    '"10.0.0.0/33": must be a valid CIDR value') in bad.stderr
    resources = kubectl("api-resources")
    for short in ("ing ", "netpol ", "pdb "):
        assert short in resources
