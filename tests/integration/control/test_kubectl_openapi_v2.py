"""The real kubectl 1.32 validating on the client side against `knet control`: for a
`kind: List` (what `kubectl get -o yaml` prints) kubectl cannot ask the server to validate,
so it reads the OpenAPI v2 models as gnostic protobuf from /openapi/v2 and checks each item
itself, in its own words (k8s.io/kubectl's validation), before creating anything."""

from __future__ import annotations

import json
import time
from pathlib import Path

from test_kubectl import Kubectl, kubectl, server  # noqa: F401 - fixtures


def _list(*items: dict) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(items)})


def _deployment(name: str, ns: str) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "containers": [{"name": "web", "image": "nginx"}]}}}}


def test_apply_a_list_creates_every_item(server: Path, tmp_path: Path) -> None:  # noqa: F811
    ns = "t-list-w"            # the List creates its namespace: `-n` must name it
    k = Kubectl(server, tmp_path / "cache", ns)
    items = ({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
             {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": ns},
              "data": {"a": "b"}},
             _deployment("web", ns))
    out = k("apply", "-f", "-", input=_list(*items))
    assert out.splitlines() == [f"namespace/{ns} created", "configmap/c created",
                                "deployment.apps/web created"]
    assert k.json("get", "configmap", "c")["data"] == {"a": "b"}
    listed = k("get", "namespace/" + ns, "configmap/c", "deployment/web", "-o", "yaml")
    again = k("apply", "-f", "-", input=listed)            # what users re-apply
    # as on kube-apiserver: the last-applied annotation now holds the whole object
    assert again.splitlines() == [f"namespace/{ns} configured", "configmap/c configured",
                                  "deployment.apps/web configured"]


def test_a_misspelt_field_in_a_list_is_refused_by_kubectl(kubectl: Kubectl) -> None:  # noqa: F811
    bad = _deployment("bad", kubectl.namespace)
    bad["spec"]["replica"] = 2
    refused = kubectl.run("apply", "-f", "-", input=_list(bad), check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        'error: error validating "STDIN": error validating data: '
        'ValidationError(Deployment.spec): unknown field "replica" in '
        "io.k8s.api.apps.v1.DeploymentSpec; if you choose to ignore these errors, "
        "turn validation off with --validate=false")
    assert "No resources found" in kubectl.run("get", "deployments").stderr
    passed = kubectl("apply", "--validate=false", "-f", "-", input=_list(bad))
    assert passed.strip() == "deployment.apps/bad created"
    assert "replica" not in kubectl.json("get", "deployment", "bad")["spec"]


CRD = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
       "metadata": {"name": "crontabs.v2.example.com"},
       "spec": {"group": "v2.example.com", "scope": "Namespaced",
                "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab"},
                "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                    "openAPIV3Schema": {"type": "object", "properties": {"spec": {
                        "type": "object", "properties": {
                            "cronSpec": {"type": "string"},
                            "size": {"type": "integer", "nullable": True},
                            "port": {"x-kubernetes-int-or-string": True},
                            "extra": {"type": "object",
                                      "x-kubernetes-preserve-unknown-fields": True,
                                      "properties": {"known": {"type": "string"}}}}}}}}}]}}


def test_custom_resources_in_lists_are_checked_like_the_server(kubectl: Kubectl) -> None:  # noqa: F811
    kubectl("apply", "-f", "-", input=json.dumps(CRD))
    ns = kubectl.namespace
    tab = {"apiVersion": "v2.example.com/v1", "kind": "CronTab",
           "metadata": {"name": "t", "namespace": ns},
           "spec": {"cronSpec": "* * * * *", "size": None, "port": "http",
                    "extra": {"known": "k", "unknown": {"deep": [1]}}}}
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": ns}}
    deadline = time.monotonic() + 20
    while True:            # the CRD's schema reaches /openapi/v2 once it is Established
        out = kubectl.run("apply", "-f", "-", input=_list(cm, tab), check=False)
        if out.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert out.stdout.splitlines() == ["configmap/c created",
                                       "crontab.v2.example.com/t created"], out.stderr
    tab["spec"]["cronSpc"] = "x"
    tab["metadata"]["name"] = "bad"
    refused = kubectl.run("apply", "-f", "-", input=_list(tab), check=False)
    assert refused.returncode == 1
    assert ('ValidationError(CronTab.spec): unknown field "cronSpc" in '
            "com.example.v2.v1.CronTab.spec") in refused.stderr


def test_explain_reads_the_v2_models_too(kubectl: Kubectl) -> None:  # noqa: F811
    out = kubectl("explain", "deployment.spec.replicas", "--output=plaintext-openapiv2")
    assert "FIELD:    replicas <integer>" in out and "Number of desired pods." in out
    out = kubectl("explain", "pods.spec", "--output=plaintext-openapiv2")
    assert "RESOURCE: spec <Object>" in out and "activeDeadlineSeconds\t<integer>" in out
