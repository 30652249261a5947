"""Pods' streams as users drive them on a real cluster: "Get a Shell to a Running Container"
with kubectl exec (piped stdin) and the official Python client's exec with stdin (text
frames, `write_stdin` / `update` / `read_stdout`)."""

from __future__ import annotations

import pytest
from conftest import WEB_DEPLOYMENT, Cluster, client_pod


@pytest.fixture(scope="module")
def workload(cluster: Cluster) -> str:
    cluster.kubectl("apply", "-f", "-", input=WEB_DEPLOYMENT + "---" + client_pod())
    cluster.wait("client running", lambda: cluster.get("pod", "client")["status"].get(
        "phase") == "Running")
    return str(cluster.ready_pods("app=web", 3)[0]["metadata"]["name"])


def test_kubectl_exec_with_piped_stdin(cluster: Cluster, workload: str) -> None:
    r = cluster.kubectl("exec", "-i", "client", "--", "sh", "-c", "wc -l; echo done >&2",
                        input="a\nb\nc\n")
    assert r.stdout.strip() == "3" and r.stderr.strip() == "done"
    r = cluster.kubectl("exec", "-i", "client", "--", "sh", "-c", "cat; exit 4",
                        input="x", check=False)
    assert r.returncode == 4 and r.stdout == "x"
    assert "command terminated with exit code 4" in r.stderr


def test_python_client_exec_with_stdin(cluster: Cluster, workload: str) -> None:
    from kubernetes import client, config
    from kubernetes.stream import stream
    api = client.CoreV1Api(config.new_client_from_config(str(cluster.kubeconfig)))
    resp = stream(api.connect_get_namespaced_pod_exec, "client", "default",
                  command=["sh"], stdin=True, stdout=True, stderr=True, tty=False,
                  _preload_content=False)
    try:
        out = ""
        resp.write_stdin("echo hello from $(hostname)\n")
        for _ in range(50):
            resp.update(timeout=0.2)
            out += resp.read_stdout() if resp.peek_stdout() else ""
            if "\n" in out:
                break
        assert out == "hello from client\n"
        resp.write_stdin("echo oops >&2; exit 0\n")
        err = ""
        while resp.is_open():
            resp.update(timeout=0.2)
            err += resp.read_stderr() if resp.peek_stderr() else ""
        assert err == "oops\n"
    finally:
        resp.close()
    # the one-shot form: stdin is not needed, output is returned whole
    out = stream(api.connect_get_namespaced_pod_exec, "client", "default",
                 command=["cat", "/etc/hostname"], stderr=True, stdin=False, stdout=True,
                 tty=False)
    assert out.strip() == "client"
