"""hostNetwork pods run in their node's network namespace (a knet node *is* a netns): the
pod's IP is the node's, its hostname the node's name, its ports the node's (hostPort =
containerPort), a Service reaches it, `kubectl debug node/NAME` gets the node's network, and
removing such a pod leaves the node's netns and its other pods alone. Bad input: a hostPort
that differs from containerPort (kube-apiserver's 422), two pods wanting one node port
(kube-scheduler's NodePorts reason)."""

from __future__ import annotations

import subprocess

import pytest
from clusterkit import Cluster, client_pod

pytestmark = pytest.mark.root

HOSTNET = """
apiVersion: v1
kind: Pod
metadata: {name: on-node, labels: {app: on-node}}
spec:
  hostNetwork: true
  nodeName: node-2
  containers:
  - name: c
    image: registry.k8s.io/e2e-test-images/agnhost:2.53
    args: ["netexec", "--http-port=8080"]
    ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: on-node}
spec:
  selector: {app: on-node}
  ports: [{port: 80, targetPort: 8080}]
"""


def _running(cluster: Cluster, name: str) -> dict:
    return cluster.wait(f"{name} running", lambda: (p := cluster.get("pod", name))["status"].get(
        "phase") == "Running" and p, timeout=90)


def test_a_host_network_pod_has_its_nodes_address_name_and_ports(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=client_pod())
    cluster.kubectl("apply", "-f", "-", input=HOSTNET)
    pod = _running(cluster, "on-node")
    _running(cluster, "client")
    node_ip = next(a["address"] for a in cluster.get("node", "node-2")["status"]["addresses"]
                   if a["type"] == "InternalIP")
    assert pod["status"]["podIP"] == node_ip == pod["status"]["hostIP"]
    assert pod["spec"]["containers"][0]["ports"][0]["hostPort"] == 8080
    # from a pod: the node's address on the pod's port, and through the Service
    cluster.ready_pods("app=on-node", 1)
    r = cluster.exec("client", "wget", "-qO-", "-T", "5", f"http://{node_ip}:8080/hostname")
    assert r.stdout.strip() == "node-2"
    r = cluster.exec("client", "wget", "-qO-", "-T", "5", "http://on-node/hostname")
    assert r.stdout.strip() == "node-2"
    # inside: the node's interfaces (its underlay address), not a pod's eth0
    r = cluster.kubectl("exec", "on-node", "--", "ip", "-o", "-4", "addr")
    assert f"inet {node_ip}/" in r.stdout, r.stdout
    # removing it leaves the node's netns (and the client's traffic to node-2) working
    cluster.kubectl("delete", "pod", "on-node", "--grace-period=1")
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                           check=True).stdout
    assert "node-2" in netns, netns
    cluster.kubectl("apply", "-f", "-", input=HOSTNET.split("---")[0])
    _running(cluster, "on-node")
    cluster.wait("served again", lambda: cluster.exec(
        "client", "wget", "-qO-", "-T", "3", f"http://{node_ip}:8080/hostname",
        check=False).stdout.strip() == "node-2")


def test_debug_node_gets_the_nodes_network(cluster: Cluster) -> None:
    r = cluster.kubectl("debug", "node/node-1", "-i", "--image=busybox", "--", "sh",
                        input="hostname; ip -o -4 addr; exit 0\n", timeout=90, check=False)
    node_ip = next(a["address"] for a in cluster.get("node", "node-1")["status"]["addresses"]
                   if a["type"] == "InternalIP")
    assert "node-1" in r.stdout.splitlines(), (r.stdout, r.stderr)
    assert f"inet {node_ip}/" in r.stdout, (r.stdout, r.stderr)
    assert "hostNetwork" not in r.stderr + r.stdout


def test_bad_host_ports_are_refused_as_upstream(cluster: Cluster) -> None:
    bad = HOSTNET.split("---")[0].replace("name: on-node,", "name: bad,").replace(
        "{containerPort: 8080}", "{containerPort: 8080, hostPort: 80}").replace(
        "name: on-node", "name: bad")
    r = cluster.kubectl("apply", "-f", "-", input=bad, check=False)
    assert r.returncode != 0
    assert ('spec.containers[0].ports[0].hostPort: Invalid value: 80: must match '
            '`containerPort` when `hostNetwork` is true') in r.stderr, r.stderr
    twin = HOSTNET.split("---")[0].replace("name: on-node,", "name: twin,").replace(
        "name: on-node", "name: twin").replace("  nodeName: node-2\n", "  nodeSelector: "
                                               "{kubernetes.io/hostname: node-2}\n")
    cluster.kubectl("apply", "-f", "-", input=twin)
    msg = cluster.wait("twin unschedulable", lambda: next(
        (c.get("message") for c in cluster.get("pod", "twin")["status"].get("conditions") or []
         if c["type"] == "PodScheduled" and c["status"] == "False"), None))
    assert "didn't have free ports for the requested pod ports" in msg, msg
    cluster.kubectl("delete", "pod", "twin", "--wait=false")
