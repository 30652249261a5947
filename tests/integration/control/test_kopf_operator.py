"""A small kopf operator against `knet control`: its create handler makes a child ConfigMap
owned by the custom object and records it in status; a finalizer holds the object until the
delete handler ran; then the garbage collector takes the child."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from test_kubectl import Kubectl, kubectl, server  # noqa: F401 - fixtures
from test_kubectl_schemas import CRD

OPERATOR = '''
import kopf, kubernetes

@kopf.on.create("stable.example.com", "v1", "crontabs")
def made(spec, name, namespace, body, **_):
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name + "-child"},
          "data": {"cron": spec.get("cronSpec", "")}}
    kopf.adopt(cm, owner=body)
    kubernetes.config.load_kube_config()
    kubernetes.client.CoreV1Api().create_namespaced_config_map(namespace, cm)
    return {"child": cm["metadata"]["name"]}

@kopf.on.delete("stable.example.com", "v1", "crontabs")
def gone(name, **_):
    print("DELETE HANDLER RAN FOR", name, flush=True)
'''
WITH_STATUS = CRD.replace("""            spec:
              type: object""", """            status:
              type: object
              x-kubernetes-preserve-unknown-fields: true
            spec:
              type: object""")
CRONTAB = """apiVersion: stable.example.com/v1
kind: CronTab
metadata: {name: nightly}
spec: {cronSpec: "0 3 * * *", image: backup}
"""


def _until(check: Callable[[], object], what: str, timeout: float = 30) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_kopf_operator_with_child_status_and_finalizer(kubectl: Kubectl,  # noqa: F811
                                                         server: Path,  # noqa: F811
                                                         tmp_path: Path) -> None:
    kubectl("apply", "-f", "-", input=WITH_STATUS)
    kubectl("wait", "--for=condition=Established", "--timeout=10s",
            "crd/crontabs.stable.example.com")
    (tmp_path / "op.py").write_text(OPERATOR)
    log = open(tmp_path / "kopf.log", "w")  # noqa: SIM115 - closed below
    env = {**os.environ, "KUBECONFIG": str(server / "kubeconfig")}
    op = subprocess.Popen([sys.executable, "-m", "kopf", "run", "--standalone", "-n",
                           kubectl.namespace, str(tmp_path / "op.py")],
                          env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        kubectl("apply", "-f", "-", input=CRONTAB)
        child = _until(lambda: kubectl.run("get", "configmap", "nightly-child", "-o", "json",
                                           check=False).stdout, "the child ConfigMap")
        assert '"kind": "CronTab"' in str(child) and '"controller": true' in str(child)
        def handled() -> dict | None:
            got = kubectl.json("get", "crontab", "nightly")
            return got if got.get("status", {}).get("made") else None
        obj = _until(handled, "the handler's status")
        assert obj["status"]["made"] == {"child": "nightly-child"}         # type: ignore[index]
        assert "kopf.zalando.org/KopfFinalizerMarker" in obj["metadata"][   # type: ignore[index]
            "finalizers"]
        kubectl("delete", "crontab", "nightly", "--timeout=30s")
        _until(lambda: "DELETE HANDLER RAN FOR nightly" in (tmp_path / "kopf.log").read_text(),
               "the delete handler")
        _until(lambda: kubectl.run("get", "configmap", "nightly-child",
                                   check=False).returncode != 0, "the child collected")
    finally:
        op.send_signal(signal.SIGINT)
        try:
            op.wait(timeout=15)
        finally:
            if op.poll() is None:
                op.kill()
            log.close()
        kubectl.run("delete", "crd", "crontabs.stable.example.com", check=False)
