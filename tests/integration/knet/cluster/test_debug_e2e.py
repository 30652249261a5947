""""Debug Running Pods" with the real kubectl 1.32: an ephemeral container with `kubectl debug
-i --target` that sees the target's processes, its status in ephemeralContainerStatuses, a
debug copy with `--copy-to --share-processes` (kubectl posts that Pod as protobuf), and the
bad input: a pod that is gone (the 404 names it, through the official Python client too)."""

from __future__ import annotations

import pytest
from clusterkit import Cluster

APP = """
apiVersion: v1
kind: Pod
metadata: {name: app}
spec:
  containers:
  - {name: main, image: busybox, command: ["sh", "-c", "exec sleep 3601"]}
"""


@pytest.fixture(scope="module")
def app(cluster: Cluster) -> str:
    cluster.kubectl("apply", "-f", "-", input=APP)
    cluster.wait("app running", lambda: cluster.get("pod", "app")["status"].get(
        "phase") == "Running")
    return "app"


def test_debug_with_target_sees_the_targets_processes(cluster: Cluster, app: str) -> None:
    r = cluster.kubectl("debug", "-i", app, "--image=busybox", "--target=main", "-c", "dbg",
                        "--", "sh", input="ps -o args; echo in $(hostname); exit 0\n",
                        timeout=90, check=False)
    assert "sleep 3601" in r.stdout, (r.stdout, r.stderr)
    assert "in app" in r.stdout
    def ended() -> dict | None:
        st = cluster.get("pod", app)["status"].get("ephemeralContainerStatuses") or []
        return st[0] if st and "terminated" in st[0]["state"] else None
    st = cluster.wait("the debugger's status", ended)
    assert st["name"] == "dbg" and st["state"]["terminated"]["exitCode"] == 0
    pod = cluster.get("pod", app)
    assert pod["spec"]["ephemeralContainers"][0]["targetContainerName"] == "main"
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0   # the app untouched
    # its log stays readable, as kubectl logs -c shows it
    assert "in app" in cluster.kubectl("logs", app, "-c", "dbg").stdout


def test_debug_it_with_a_terminal(cluster: Cluster, app: str) -> None:
    """The task's own command, `kubectl debug -it POD --image=busybox --target=C -- sh`, from a
    real terminal (util-linux `script` gives kubectl a pty): a prompt, ps, exit."""
    # -e: procps' ps lists only the processes of its own terminal without it
    text = cluster.in_terminal(f"debug -it {app} --image=busybox --target=main -c dbgtty -- sh",
                               b"ps -e -o pid,args; echo processes listed; exit\r")
    assert "processes listed" in text, text
    assert "sleep 3601" in text, text      # the target's process, seen from the debugger


def test_debug_copy_with_shared_processes(cluster: Cluster, app: str) -> None:
    r = cluster.kubectl("debug", app, "-i", "--copy-to=app-debug", "--image=busybox",
                        "--share-processes", "-c", "dbg", "--", "sh",
                        input="sleep 1; ps -o args; exit 0\n", timeout=90, check=False)
    assert "sleep 3601" in r.stdout, (r.stdout, r.stderr)
    copy = cluster.get("pod", "app-debug")
    assert copy["spec"]["shareProcessNamespace"] is True
    assert [c["name"] for c in copy["spec"]["containers"]] == ["main", "dbg"]
    cluster.kubectl("delete", "pod", "app-debug", "--wait=false")


def test_an_ephemeral_container_for_a_pod_that_is_gone(cluster: Cluster) -> None:
    r = cluster.kubectl("debug", "gone", "--image=busybox", check=False)
    assert r.returncode == 1
    assert r.stderr.strip().endswith('Error from server (NotFound): pods "gone" not found'), \
        r.stderr
    from kubernetes import client, config
    api = client.CoreV1Api(config.new_client_from_config(str(cluster.kubeconfig)))
    with pytest.raises(client.ApiException) as err:
        api.patch_namespaced_pod_ephemeralcontainers(
            "gone", "default", {"spec": {"ephemeralContainers": [
                {"name": "dbg", "image": "busybox"}]}})
    assert err.value.status == 404
    import json
    body = json.loads(err.value.body)
    assert body["message"] == 'pods "gone" not found'
    assert body["details"] == {"name": "gone", "kind": "pods"}


def test_debug_node_runs_a_pod_on_that_node(cluster: Cluster) -> None:
    """`kubectl debug node/NAME -i`: the pod (posted as protobuf) runs on that node and is
    attached; it has the node's network (test_host_network_e2e.py) and the node's root at
    /host, without knet's secrets."""
    state = cluster.state_dir.resolve()
    r = cluster.kubectl("debug", "node/node-2", "-i", "--image=busybox", "--", "sh",
                        input=f"echo on the node; ls -A /host{state} | wc -l; "
                              f"cat /host{state}/token; ls /host/etc/os-release; exit 0\n",
                        timeout=90, check=False)
    assert "on the node" in r.stdout, (r.stdout, r.stderr)
    # the node's root is at /host, but knet's state dir (the admin token, the CA key) is empty
    assert "/host/etc/os-release" in r.stdout and "\n0\n" in r.stdout, (r.stdout, r.stderr)
    assert (state / "token").exists() and "No such file" in r.stderr + r.stdout
    pods = [p for p in cluster.get("pods")["items"]
            if p["metadata"]["name"].startswith("node-debugger-node-2-")]
    assert len(pods) == 1 and pods[0]["spec"]["nodeName"] == "node-2"
    assert pods[0]["spec"]["volumes"][0]["hostPath"]["path"] == "/"


def test_attach_with_stdin_to_a_container_without_stdin(cluster: Cluster) -> None:
    """Bad input: `kubectl attach -i` to a container that kept no stdin. As with containerd,
    the input goes nowhere and the output still comes, until the container ends."""
    cluster.kubectl("apply", "-f", "-", input="""
apiVersion: v1
kind: Pod
metadata: {name: chatty}
spec:
  restartPolicy: Never
  containers:
  - {name: c, image: busybox, command: ["sh", "-c", "sleep 6; echo hello from chatty; sleep 1"]}
""")
    cluster.wait("chatty running", lambda: cluster.get("pod", "chatty")["status"].get(
        "phase") == "Running")
    r = cluster.kubectl("attach", "-i", "chatty", input="echo this goes nowhere\n",
                        timeout=60, check=False)
    assert "hello from chatty" in r.stdout, (r.stdout, r.stderr)
    assert "goes nowhere" not in r.stdout


def test_a_host_path_into_the_state_dir_never_mounts(cluster: Cluster) -> None:
    """Bad input: a hostPath onto knet's state dir (the cluster's keys and tokens) is refused
    by the kubelet with a FailedMount Event naming the way out; the pod never starts and
    nothing is made there."""
    state = cluster.state_dir.resolve()
    cluster.kubectl("apply", "-f", "-", input=f"""
apiVersion: v1
kind: Pod
metadata: {{name: peek}}
spec:
  containers:
  - {{name: c, image: busybox, command: ["cat", "/k/token"],
     volumeMounts: [{{name: k, mountPath: /k}}]}}
  volumes:
  - {{name: k, hostPath: {{path: "{state}/peek", type: DirectoryOrCreate}}}}
""")
    def event() -> str | None:
        for e in cluster.get("events", "--field-selector", "involvedObject.name=peek")["items"]:
            if e["reason"] == "FailedMount":
                return str(e["message"])
        return None
    msg = cluster.wait("FailedMount event", event)
    assert "no pod may mount it" in msg and "PersistentVolumeClaim" in msg, msg
    assert cluster.get("pod", "peek")["status"]["phase"] == "Pending"
    assert not (state / "peek").exists()
    cluster.kubectl("delete", "pod", "peek", "--wait=false")
