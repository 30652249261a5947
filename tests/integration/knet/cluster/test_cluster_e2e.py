"""Issue 4 end to end, as a user does it: `knet up --nodes 2`, kubectl apply, real pods with
real processes and IPs, reached across nodes; self-healing, probes, logs, exec, bad input,
agent restart and node failure; `knet down` (in the fixture) leaves the host as it was."""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import time
from pathlib import Path

from clusterkit import WEB_DEPLOYMENT, Cluster, client_pod

WEB = WEB_DEPLOYMENT + "---" + client_pod()


def _ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in pod.get("status", {}).get("conditions") or [])


def _container_pid(c: Cluster, pod: dict, container: str) -> int:
    """The host pid of a container's process, from the runtime's record."""
    node = pod["spec"]["nodeName"]
    m = pod["metadata"]
    d = c.state_dir / "pods" / node / f"{m['namespace']}_{m['name']}_{m['uid']}"
    states = sorted((d / "containers" / container).glob("*.state"),
                    key=lambda p: int(p.stem))
    fields = dict(line.split("=", 1) for line in states[-1].read_text().splitlines())
    return int(fields["pid"])


def test_deployment_spreads_over_nodes_with_ips_from_node_cidrs(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=WEB)
    pods = cluster.ready_pods("app=web", 3)
    cluster.ready_pods("!app", 1)  # the client
    nodes = {n["metadata"]["name"]: n for n in cluster.get("nodes")["items"]}
    assert {p["spec"]["nodeName"] for p in pods} == {"node-1", "node-2"}
    ips = [p["status"]["podIP"] for p in pods]
    assert len(set(ips)) == 3
    for p in pods:
        cidr = ipaddress.ip_network(nodes[p["spec"]["nodeName"]]["spec"]["podCIDR"])
        assert ipaddress.ip_address(p["status"]["podIP"]) in cidr
        assert p["status"]["phase"] == "Running"
    slices = cluster.get("endpointslices", "-l", "kubernetes.io/service-name=kubernetes")
    assert len(slices["items"]) == 1, "the kubernetes Service must have exactly one slice"


def test_client_reaches_every_pod_by_ip_across_nodes(cluster: Cluster) -> None:
    pods = cluster.ready_pods("app=web", 3)
    client_node = cluster.get("pod", "client")["spec"]["nodeName"]
    assert any(p["spec"]["nodeName"] != client_node for p in pods)  # cross-node included
    for p in pods:
        out = cluster.exec("client", "curl", "-s", "-m", "3",
                           f"http://{p['status']['podIP']}/").stdout
        assert f"Hostname: {p['metadata']['name']}" in out


def test_kubectl_wide_logs_and_exec(cluster: Cluster) -> None:
    pods = cluster.ready_pods("app=web", 3)
    wide = cluster.kubectl("get", "pods", "-o", "wide").stdout
    for p in pods:
        assert p["status"]["podIP"] in wide and p["spec"]["nodeName"] in wide
    name = pods[0]["metadata"]["name"]
    assert cluster.exec(name, "hostname").stdout.strip() == name
    assert "listening" in cluster.kubectl("logs", name).stdout
    r = cluster.exec(name, "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert r.returncode == 3 and "out" in r.stdout and "err" in r.stderr
    # kubectl exec -it: a real terminal on our side (script(1)), a pty in the pod
    kubectl = (f"kubectl --kubeconfig {cluster.kubeconfig} --cache-dir {cluster.cache_dir} "
               f"exec -it {name} -- sh -c 'tty; read x; echo got-$x; exit 4'")
    r2 = subprocess.run(["script", "-qec", kubectl, "/dev/null"], input="hello\n",
                        capture_output=True, text=True, timeout=30, check=False)
    assert "/dev/pts/" in r2.stdout and "got-hello" in r2.stdout, r2
    assert r2.returncode == 4
    # kubectl logs -f streams what the container writes while it runs
    follow = subprocess.Popen(["kubectl", "--kubeconfig", str(cluster.kubeconfig),
                               "--cache-dir", str(cluster.cache_dir), "logs", "-f", name],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert follow.stdout is not None
        assert "listening" in follow.stdout.readline()
        time.sleep(1)
        assert follow.poll() is None, "kubectl logs -f ended instead of following"
    finally:
        follow.terminate()
        follow.wait(timeout=10)


def test_killed_container_is_restarted(cluster: Cluster) -> None:
    pod = cluster.ready_pods("app=web", 3)[0]
    name = pod["metadata"]["name"]
    os.kill(_container_pid(cluster, pod, "whoami"), signal.SIGKILL)

    def restarted() -> bool:
        p = cluster.get("pod", name)
        return p["status"]["containerStatuses"][0]["restartCount"] >= 1 and _ready(p)
    cluster.wait("the killed container to come back", restarted, timeout=30)
    last = cluster.get("pod", name)["status"]["containerStatuses"][0]["lastState"]
    assert last["terminated"]["exitCode"] == 137
    assert "listening" in cluster.kubectl("logs", "--previous", name).stdout
    other = cluster.ready_pods("app=web", 3)[1]["metadata"]["name"]
    r = cluster.kubectl("logs", "--previous", other, check=False)
    if cluster.get("pod", other)["status"]["containerStatuses"][0]["restartCount"] == 0:
        assert r.returncode != 0 and "previous" in r.stderr


def test_deleted_pod_is_replaced_with_a_new_ip(cluster: Cluster) -> None:
    pods = cluster.ready_pods("app=web", 3)
    victim = pods[0]
    cluster.kubectl("delete", "pod", victim["metadata"]["name"], "--wait=true")
    after = cluster.ready_pods("app=web", 3)
    names = {p["metadata"]["name"] for p in after}
    assert victim["metadata"]["name"] not in names
    new = [p for p in after if p["metadata"]["name"] not in
           {q["metadata"]["name"] for q in pods}]
    assert len(new) == 1
    assert new[0]["status"]["podIP"] not in {q["status"]["podIP"] for q in pods[1:]}


def test_failing_readiness_probe_keeps_pod_out_of_endpoints(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input="""
apiVersion: v1
kind: Pod
metadata: {name: unready, labels: {app: unready}}
spec:
  containers:
  - name: c
    image: knet/whoami
    readinessProbe: {tcpSocket: {port: 9999}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: unready}
spec:
  selector: {app: unready}
  ports: [{port: 80}]
""")

    def running_not_ready() -> bool:
        p = cluster.get("pod", "unready")
        return p["status"].get("phase") == "Running" and not _ready(p)
    cluster.wait("pod unready to run", running_not_ready)
    time.sleep(2)
    assert not _ready(cluster.get("pod", "unready"))
    ep = cluster.get("endpoints", "unready")
    assert not any(s.get("addresses") for s in ep.get("subsets") or [])
    events = cluster.kubectl("get", "events", "--field-selector",
                             "involvedObject.name=unready").stdout
    assert "Readiness probe failed" in events and "9999" in events
    cluster.kubectl("delete", "pod,svc", "unready", "--wait=true")


def _waiting_reason(c: Cluster, pod: str) -> str:
    st = c.get("pod", pod)["status"].get("containerStatuses") or [{}]
    return (st[0].get("state", {}).get("waiting") or {}).get("reason", "")


def test_bad_images_commands_and_crashes_show_kubernetes_statuses(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input="""
apiVersion: v1
kind: Pod
metadata: {name: noimage}
spec:
  containers: [{name: c, image: example.com/not/in-catalog:1}]
---
apiVersion: v1
kind: Pod
metadata: {name: nocommand}
spec:
  containers: [{name: c, image: busybox, command: ["no-such-binary-knet"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  containers: [{name: c, image: busybox, command: ["sh", "-c", "exit 2"]}]
""")
    cluster.wait("ErrImagePull", lambda: _waiting_reason(cluster, "noimage") == "ErrImagePull")
    msg = cluster.get("pod", "noimage")["status"]["containerStatuses"][0]["state"]["waiting"]
    assert "not in knet's built-in catalog" in msg["message"]
    cluster.wait("a start error", lambda: "executable file not found" in str(
        cluster.get("pod", "nocommand")["status"].get("containerStatuses")))
    cluster.wait("CrashLoopBackOff", lambda: _waiting_reason(cluster, "crasher")
                 == "CrashLoopBackOff")
    st = cluster.get("pod", "crasher")["status"]["containerStatuses"][0]
    assert st["restartCount"] >= 1 and st["lastState"]["terminated"]["exitCode"] == 2
    assert "CrashLoopBackOff" in cluster.kubectl("get", "pod", "crasher").stdout
    cluster.kubectl("delete", "pod", "noimage", "nocommand", "crasher", "--wait=true",
                    timeout=60)


def _netns() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def test_pod_deleted_while_being_created_leaves_nothing(cluster: Cluster) -> None:
    before = _netns()
    cluster.kubectl("run", "flash", "--image=knet/whoami")  # deleted at once, mid-creation
    cluster.kubectl("delete", "pod", "flash", "--wait=true", timeout=60)
    r = cluster.kubectl("get", "pod", "flash", check=False)
    assert r.returncode != 0 and "NotFound" in r.stderr
    def left() -> list[str]:
        return [str(p) for d in (cluster.state_dir / "pods").glob("*/default_flash_*")
                for p in [d, *d.rglob("*")]]
    def gone() -> bool:
        files = left()
        assert not files, f"left: {files}"
        return True
    cluster.wait("flash's pod directory to go", gone, timeout=10)
    cluster.wait("flash's network namespace to go", lambda: _netns() == before, timeout=10)


def test_prestop_hook_runs_before_sigterm_within_the_grace(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input="""
apiVersion: v1
kind: Pod
metadata: {name: hooked}
spec:
  terminationGracePeriodSeconds: 20
  containers:
  - name: c
    image: knet/whoami
    lifecycle: {preStop: {sleep: {seconds: 3}}}
---
apiVersion: v1
kind: Pod
metadata: {name: badhook}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: c
    image: knet/whoami
    lifecycle: {preStop: {exec: {command: ["sh", "-c", "exit 9"]}}}
""")
    cluster.ready_pods("!app", 3)  # client, hooked, badhook
    t0 = time.monotonic()
    cluster.kubectl("delete", "pod", "hooked", "--wait=true")
    took = time.monotonic() - t0
    assert 3 <= took < 15, took  # the hook's 3 s, then whoami exits at once on SIGTERM
    cluster.kubectl("delete", "pod", "badhook", "--wait=true")
    events = cluster.kubectl("get", "events", "--field-selector",
                             "involvedObject.name=badhook").stdout
    assert "FailedPreStopHook" in events and "exited with 9" in events


def test_tutorial_nginx_and_busybox_unchanged(cluster: Cluster) -> None:
    # kubernetes.io/docs/concepts/workloads/controllers/deployment: nginx-deployment.yaml
    cluster.kubectl("apply", "-f", "-", input="""
apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx-deployment
  labels:
    app: nginx
spec:
  replicas: 3
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: nginx:1.14.2
        ports:
        - containerPort: 80
""")
    cluster.kubectl("expose", "deployment", "nginx-deployment", "--name=nginx", "--port=80")
    cluster.ready_pods("app=nginx", 3)
    cluster.kubectl("run", "bb", "--image=busybox:1.36", "--restart=Never", "--",
                    "sleep", "600")
    cluster.ready_pods("run=bb", 1)
    out = cluster.exec("bb", "wget", "-qO-", "http://nginx").stdout
    assert "Welcome to nginx!" in out


def test_agent_restart_adopts_running_pods(cluster: Cluster) -> None:
    before = {p["metadata"]["name"]: p for p in cluster.ready_pods("app=web", 3)}
    on1 = [p for p in before.values() if p["spec"]["nodeName"] == "node-1"]
    assert on1, "the deployment should have a pod on node-1"
    pids = {p["metadata"]["name"]: _container_pid(cluster, p, "whoami") for p in on1}
    cluster.knet("node", "stop", "node-1", "--state-dir", str(cluster.state_dir))
    cluster.knet("node", "start", "node-1", "--state-dir", str(cluster.state_dir))
    time.sleep(3)
    after = {p["metadata"]["name"]: p for p in cluster.ready_pods("app=web", 3)}
    for name, pid in pids.items():
        assert name in after, f"{name} was replaced instead of adopted"
        p = after[name]
        assert _container_pid(cluster, p, "whoami") == pid
        assert p["status"]["podIP"] == before[name]["status"]["podIP"]
        assert p["status"]["containerStatuses"][0]["restartCount"] == \
            before[name]["status"]["containerStatuses"][0]["restartCount"]
        out = cluster.exec("client", "curl", "-s", "-m", "3", f"http://{p['status']['podIP']}/")
        assert f"Hostname: {name}" in out.stdout


def test_node_failure_moves_pods_to_the_other_node(cluster: Cluster) -> None:
    cluster.ready_pods("app=web", 3)
    cluster.knet("node", "stop", "node-2", "--state-dir", str(cluster.state_dir))

    def node2_not_ready() -> bool:
        n = cluster.get("node", "node-2")
        return any(c["type"] == "Ready" and c["status"] != "True"
                   for c in n["status"]["conditions"])
    cluster.wait("node-2 NotReady", node2_not_ready, timeout=60)
    assert "NotReady" in cluster.kubectl("get", "nodes").stdout

    def all_on_node1() -> bool:
        pods = cluster.get("pods", "-l", "app=web")["items"]
        return len(pods) == 3 and all(p["spec"].get("nodeName") == "node-1" and _ready(p)
                                      for p in pods)
    cluster.wait("web pods rescheduled on node-1", all_on_node1, timeout=90)
    cluster.knet("node", "start", "node-2", "--state-dir", str(cluster.state_dir))
    cluster.wait("node-2 Ready again", lambda: not node2_not_ready(), timeout=60)
    assert Path(cluster.kubeconfig).exists()
