"""Pods' streams as users drive them on a real cluster: "Get a Shell to a Running Container"
with kubectl exec (piped stdin) and the official Python client's exec with stdin (text
frames, `write_stdin` / `update` / `read_stdout`); "Use Port Forwarding to Access
Applications in a Cluster" with kubectl port-forward to a pod, a Service and a Deployment, and
the Python client's portforward."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator

import pytest
from clusterkit import WEB_DEPLOYMENT, Cluster, client_pod


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


# -- "Use Port Forwarding to Access Applications in a Cluster" (whoami instead of redis) ----

WEB_SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 8080, targetPort: http}]
"""


@contextlib.contextmanager
def port_forward(cluster: Cluster, *args: str) -> Iterator[subprocess.Popen[str]]:
    """`kubectl port-forward ARGS` until its 'Forwarding from' line, stopped at the end."""
    proc = subprocess.Popen(["kubectl", "--kubeconfig", str(cluster.kubeconfig), "--cache-dir",
                             str(cluster.cache_dir), "port-forward", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("Forwarding from 127.0.0.1:"), (line, proc.poll())
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _curl(port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-s", "--max-time", "10", f"http://127.0.0.1:{port}/"],
                          capture_output=True, text=True, timeout=20, check=False)


def test_kubectl_port_forward_pod_service_deployment(cluster: Cluster, workload: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=WEB_SERVICE)
    pods = {p["metadata"]["name"] for p in cluster.get("pods", "-l", "app=web")["items"]}
    with port_forward(cluster, f"pod/{workload}", "18080:80") as proc:
        for _ in range(3):          # one kubectl, several connections (SPDY streams)
            r = _curl(18080)
            assert f"Hostname: {workload}" in r.stdout, r
        assert proc.poll() is None
    for target, port in (("svc/web", "18081:8080"), ("deploy/web", "18082:80")):
        with port_forward(cluster, target, port) as proc:
            out = _curl(int(port.split(":")[0])).stdout
            assert any(f"Hostname: {p}" in out for p in pods), (target, out)


def test_port_forward_to_a_closed_port_reports_kubes_error(cluster: Cluster,
                                                           workload: str) -> None:
    with port_forward(cluster, f"pod/{workload}", "18083:81") as proc:
        r = _curl(18083)
        assert r.stdout == ""
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "error forwarding port 81 to pod" in err, err
    assert ("failed to connect to localhost:81 inside namespace" in err
            and "dial tcp4 127.0.0.1:81: connect: connection refused" in err), err


def test_python_client_port_forward(cluster: Cluster, workload: str) -> None:
    from kubernetes import client, config
    from kubernetes.stream import portforward
    api = client.CoreV1Api(config.new_client_from_config(str(cluster.kubeconfig)))
    pf = portforward(api.connect_get_namespaced_pod_portforward, workload, "default",
                     ports="80")
    sock = pf.socket(80)
    sock.settimeout(10)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < int(
            data.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0]):
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    sock.close()
    assert data.startswith(b"HTTP/1.1 200") and f"Hostname: {workload}".encode() in data
    assert pf.error(80) is None


# -- "Access Services Running on Clusters": kubectl proxy and the proxy subresources ---------

def test_proxy_subresources_through_kubectl_proxy(cluster: Cluster, workload: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=WEB_SERVICE)
    pods = {p["metadata"]["name"]: p for p in cluster.get("pods", "-l", "app=web")["items"]}
    proc = subprocess.Popen(["kubectl", "--kubeconfig", str(cluster.kubeconfig), "--cache-dir",
                             str(cluster.cache_dir), "proxy", "--port=18001"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("Starting to serve on 127.0.0.1:18001")
        base = "http://127.0.0.1:18001/api/v1/namespaces/default"
        for path in ("services/web:http/proxy/", "services/web:8080/proxy/x?y=1",
                     "services/http:web:http/proxy/"):
            r = subprocess.run(["curl", "-s", "--max-time", "10", f"{base}/{path}"],
                               capture_output=True, text=True, timeout=20, check=False)
            assert any(f"Hostname: {p}" in r.stdout for p in pods), (path, r.stdout)
        r = subprocess.run(["curl", "-s", "--max-time", "10",
                            f"{base}/pods/{workload}:80/proxy/hello"],
                           capture_output=True, text=True, timeout=20, check=False)
        assert f"Hostname: {workload}" in r.stdout and "GET /hello" in r.stdout, r.stdout
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    # nodes/NAME/proxy reaches the kubelet API: the pod's log read from its node's kubelet
    node = pods[workload]["spec"]["nodeName"]
    log = cluster.kubectl("get", "--raw", f"/api/v1/nodes/{node}/proxy/api/v1/namespaces/"
                          f"default/pods/{workload}/log").stdout
    assert "whoami: listening on :80" in log
    # an empty port name matches no named Service port, as in kube
    r = cluster.kubectl("get", "--raw", "/api/v1/namespaces/default/services/web/proxy/",
                        check=False)
    assert 'no endpoints available for service \\"web\\"' in r.stderr or \
        'no endpoints available for service "web"' in r.stderr, r.stderr


def test_proxy_subresources_are_authorized_by_rbac(cluster: Cluster, workload: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=WEB_SERVICE)
    who = "system:serviceaccount:default:default"
    path = "/api/v1/namespaces/default/services/web:http/proxy/"
    r = cluster.kubectl("get", "--raw", path, f"--as={who}", check=False)
    assert r.returncode != 0
    assert (f'services "web:http" is forbidden: User "{who}" cannot get resource '
            '"services/proxy" in API group "" in the namespace "default"') in r.stderr
    cluster.kubectl("create", "role", "svc-proxy", "--verb=get", "--resource=services/proxy")
    cluster.kubectl("create", "rolebinding", "svc-proxy", "--role=svc-proxy",
                    "--serviceaccount=default:default")
    out = cluster.wait("the binding to take effect", lambda: cluster.kubectl(
        "get", "--raw", path, f"--as={who}", check=False).stdout)
    assert "Hostname: web-" in out


# -- attach and `kubectl run -i --rm` ----------------------------------------------------------

def test_kubectl_run_interactive_and_rm(cluster: Cluster, workload: str) -> None:
    r = cluster.kubectl("run", "-i", "--rm", "bb", "--image=busybox", "--restart=Never",
                        "--", "sh", input="echo hello from $(hostname)\nexit 0\n",
                        timeout=90)
    assert "hello from bb" in r.stdout, (r.stdout, r.stderr)
    assert 'pod "bb" deleted' in r.stdout + r.stderr
    cluster.wait("bb gone", lambda: cluster.kubectl("get", "pod", "bb",
                                                    check=False).returncode != 0)


def test_kubectl_attach_to_a_stdin_pod(cluster: Cluster, workload: str) -> None:
    cluster.kubectl("apply", "-f", "-", input="""
apiVersion: v1
kind: Pod
metadata: {name: console}
spec:
  containers:
  - {name: sh, image: busybox, command: ["sh"], stdin: true, tty: true}
""")
    cluster.wait("console running", lambda: cluster.get("pod", "console")["status"].get(
        "phase") == "Running")
    time.sleep(3)          # sh waits on its terminal: no restarts, no CrashLoopBackOff
    pod = cluster.get("pod", "console")
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    r = cluster.kubectl("attach", "-i", "console", input="echo attached to $(hostname); exit\n",
                        check=False, timeout=30)
    assert "attached to console" in r.stdout, (r.stdout, r.stderr)
    # kubectl's own words when -t is asked of a container without a terminal
    proc = subprocess.Popen(["kubectl", "--kubeconfig", str(cluster.kubeconfig), "--cache-dir",
                             str(cluster.cache_dir), "attach", "-it", "client"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=8)
    except subprocess.TimeoutExpired:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "Unable to use a TTY" in err, err


def test_a_read_only_exec_grant_opens_no_shell(cluster: Cluster, workload: str) -> None:
    """kube 1.31+: a WebSocket exec needs create on pods/exec; get alone is refused."""
    who = "system:serviceaccount:default:default"
    cluster.kubectl("create", "role", "exec-get", "--verb=get", "--resource=pods,pods/exec")
    cluster.kubectl("create", "rolebinding", "exec-get", "--role=exec-get",
                    "--serviceaccount=default:default")
    r = cluster.wait("the refusal", lambda: cluster.kubectl(
        "exec", f"--as={who}", "client", "--", "id", check=False).stderr)
    assert (f'pods "client" is forbidden: User "{who}" cannot create resource "pods/exec" '
            'in API group "" in the namespace "default"') in r, r


# what a user types to see their terminal: its name, and that the name exists in the
# container's own /dev (the pty of the container's devpts, not one of the host's)
TTY_LINE = b't=$(tty) && [ -t 0 ] && [ -t 1 ] && [ -e "$t" ] && echo "on terminal $t"; exit\r'


def test_kubectl_run_it_with_a_terminal(cluster: Cluster, workload: str) -> None:
    """The finding: `kubectl run -it --rm bb --image=busybox -- sh` from a real terminal: a
    prompt, a command, exit, the pod deleted; `tty` names a /dev/pts/N that exists inside."""
    text = cluster.in_terminal("run -it --rm bbt --image=busybox --restart=Never -- sh",
                               TTY_LINE)
    assert "\non terminal /dev/pts/" in text, text
    assert 'pod "bbt" deleted' in text, text


def test_kubectl_exec_it_names_its_terminal(cluster: Cluster, workload: str) -> None:
    text = cluster.in_terminal("exec -it client -- sh", TTY_LINE)
    assert "\non terminal /dev/pts/" in text, text
