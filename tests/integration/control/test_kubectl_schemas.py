"""The real kubectl 1.32 against `knet control`: `kubectl explain` reads the upstream schemas
from /openapi/v3, and misspelled fields are refused (default, server-side Strict), warned
about (`--validate=warn`) or dropped (`--validate=false`), in kube-apiserver's words."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from test_kubectl import Kubectl, kubectl, server  # noqa: F401 - fixtures

MISSPELT = """apiVersion: apps/v1
kind: Deployment
metadata: {name: web, lables: {app: web}}
spec:
  replica: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: nginx, prots: [{containerPort: 80}]}
"""
UNKNOWN = ('unknown field "metadata.lables", unknown field "spec.replica", '
           'unknown field "spec.template.spec.containers[0].prots"')


def test_explain_a_field_and_a_kind_recursively(kubectl: Kubectl) -> None:  # noqa: F811
    out = kubectl("explain", "deployment.spec.replicas")
    assert "KIND:       Deployment" in out and "FIELD: replicas <integer>" in out
    assert "Number of desired pods." in out
    out = kubectl("explain", "pods", "--recursive")
    assert "containers\t<[]Container> -required-" in out
    assert "containerPort\t<integer> -required-" in out
    out = kubectl("explain", "svc.spec.ports.targetPort")
    assert "Number or name of the port to access on the pods" in out


def test_misspelt_fields_are_refused_warned_or_dropped(kubectl: Kubectl,  # noqa: F811
                                                       tmp_path: Path) -> None:
    path = tmp_path / "web.yaml"
    path.write_text(MISSPELT)
    refused = kubectl.run("create", "-f", str(path), check=False)
    assert refused.returncode == 1
    assert ('Error from server (BadRequest): error when creating "' + str(path) + '": '
            'Deployment in version "v1" cannot be handled as a Deployment: strict decoding '
            "error: " + UNKNOWN) in refused.stderr
    refused = kubectl.run("apply", "--validate=strict", "-f", str(path), check=False)
    assert refused.returncode == 1 and UNKNOWN in refused.stderr
    warned = kubectl.run("apply", "--validate=warn", "-f", str(path))
    assert warned.stderr.splitlines() == [
        'Warning: unknown field "metadata.lables"', 'Warning: unknown field "spec.replica"',
        'Warning: unknown field "spec.template.spec.containers[0].prots"']
    stored = kubectl.json("get", "deployment", "web")
    assert "lables" not in stored["metadata"] and "replica" not in stored["spec"]
    assert "prots" not in stored["spec"]["template"]["spec"]["containers"][0]
    ssa = kubectl.run("apply", "--server-side", "-f", str(path), check=False)
    assert ".spec.replica: field not declared in schema" in ssa.stderr


CRD = r"""apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                cronSpec:
                  type: string
                  pattern: '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'
                image:
                  type: string
                replicas:
                  type: integer
                  minimum: 1
                  maximum: 10
                  default: 1
      additionalPrinterColumns:
      - name: Spec
        type: string
        jsonPath: .spec.cronSpec
      - name: Replicas
        type: integer
        jsonPath: .spec.replicas
      - name: Age
        type: date
        jsonPath: .metadata.creationTimestamp
  scope: Namespaced
  names:
    plural: crontabs
    singular: crontab
    kind: CronTab
    shortNames:
    - ct
"""
CRONTAB = """apiVersion: "stable.example.com/v1"
kind: CronTab
metadata:
  name: my-new-cron-object
spec:
  cronSpec: "* * * * */5"
  image: my-awesome-cron-image
  someRandomField: 42
"""


def test_the_crontab_task_from_the_docs(kubectl: Kubectl) -> None:  # noqa: F811
    """Kubernetes' task "Extend the Kubernetes API with CustomResourceDefinitions"."""
    kubectl("apply", "-f", "-", input=CRD)
    kubectl("wait", "--for=condition=Established", "--timeout=10s",
            "crd/crontabs.stable.example.com")
    assert "crontabs.stable.example.com" in kubectl("get", "crd")
    strict = kubectl.run("apply", "-f", "-", input=CRONTAB, check=False)
    assert ('CronTab in version "v1" cannot be handled as a CronTab: strict decoding error: '
            'unknown field "spec.someRandomField"') in strict.stderr
    kubectl("apply", "--validate=false", "-f", "-", input=CRONTAB)
    lines = kubectl("get", "crontab").splitlines()
    assert lines[0].split() == ["NAME", "SPEC", "REPLICAS", "AGE"]
    assert lines[1].split()[:7] == ["my-new-cron-object", "*", "*", "*", "*", "*/5", "1"]
    got = kubectl.json("get", "ct", "my-new-cron-object")
    assert got["spec"] == {"cronSpec": "* * * * */5", "image": "my-awesome-cron-image",
                           "replicas": 1}                      # pruned and defaulted
    bad = CRONTAB.replace("my-new-cron-object", "my-bad").replace(
        '"* * * * */5"', '"* * * *"').replace("someRandomField: 42", "replicas: 15")
    out = kubectl.run("apply", "-f", "-", input=bad, check=False)
    assert ('* spec.cronSpec: Invalid value: "* * * *": spec.cronSpec in body should match '
            r"'^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'") in out.stderr
    assert ("* spec.replicas: Invalid value: 15: spec.replicas in body should be less than "
            "or equal to 10") in out.stderr
    assert "replicas\t<integer>" in kubectl("explain", "crontab.spec")
    kubectl("delete", "crd", "crontabs.stable.example.com")
    gone = kubectl.run("get", "crontabs.stable.example.com", check=False)
    assert gone.returncode != 0


SCALED_CRD = CRD.replace("crontabs", "scaletabs").replace("crontab", "scaletab").replace(
    "CronTab", "ScaleTab").replace("- ct", "- st").replace("""      additionalPrinterColumns:""",
                                                           """      subresources:
        status: {}
        scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas}
      additionalPrinterColumns:""").replace("""  scope: Namespaced""", """    - name: v1beta1
      served: true
      storage: false
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
  scope: Namespaced""")


def test_custom_kind_scale_and_versions(kubectl: Kubectl) -> None:  # noqa: F811
    """`kubectl scale` through the CRD's scale subresource, and the same object read through
    another served version (`kubectl get scaletabs.v1beta1.stable.example.com`)."""
    kubectl("apply", "-f", "-", input=SCALED_CRD)
    kubectl("wait", "--for=condition=Established", "--timeout=10s",
            "crd/scaletabs.stable.example.com")
    kubectl("apply", "-f", "-", input=CRONTAB.replace("CronTab", "ScaleTab").replace(
        "  someRandomField: 42\n", "  replicas: 2\n"))
    assert "scaled" in kubectl("scale", "scaletab", "my-new-cron-object", "--replicas=5")
    assert kubectl.json("get", "st", "my-new-cron-object")["spec"]["replicas"] == 5
    beta = kubectl.json("get", "scaletabs.v1beta1.stable.example.com", "my-new-cron-object")
    assert beta["apiVersion"] == "stable.example.com/v1beta1"
    assert beta["spec"]["replicas"] == 5
    kubectl("delete", "crd", "scaletabs.stable.example.com")


def test_watching_a_custom_kind_prints_its_printer_columns(kubectl: Kubectl) -> None:  # noqa: F811
    """`kubectl get crontabs -w`: the header of the CRD's additionalPrinterColumns once, then
    one row per change (the watch serves one-row Tables with the same columns)."""
    watched = CRD.replace("crontabs", "watchtabs").replace("crontab", "watchtab").replace(
        "CronTab", "WatchTab").replace("- ct\n", "- wt\n")
    kubectl("apply", "-f", "-", input=watched)
    kubectl("wait", "--for=condition=Established", "--timeout=10s",
            "crd/watchtabs.stable.example.com")
    first = CRONTAB.replace("CronTab", "WatchTab").replace("someRandomField: 42", "replicas: 2")
    kubectl("apply", "-f", "-", input=first)
    watcher = subprocess.Popen(kubectl.base + ["get", "watchtabs", "-w", "--request-timeout",
                                               "5s"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        kubectl("apply", "-f", "-", input=first.replace("my-new-cron-object", "second"))
        kubectl("patch", "watchtab", "my-new-cron-object", "--type=merge",
                "-p", '{"spec":{"replicas":3}}')
        out, err = watcher.communicate(timeout=15)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "SPEC", "REPLICAS", "AGE"], (out, err)
    assert lines.count(lines[0]) == 1                       # the header printed once
    rows = [line.split() for line in lines[1:]]
    assert rows[0][0] == "my-new-cron-object" and rows[0][6] == "2", rows
    assert any(r[0] == "second" for r in rows)
    assert ["my-new-cron-object", "3"] in [[r[0], r[6]] for r in rows], rows
    kubectl("delete", "crd", "watchtabs.stable.example.com")
