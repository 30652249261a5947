"""NetworkPolicy in kube-proxy's nftables mode (`knet up --proxy-mode nftables`): the kernel
DNATs Service traffic in prerouting, so the policy table sees the client pod and the backend
pod, as for pod-to-pod traffic. A backend isolated to one client: that client reaches it
through the ClusterIP and directly, from the other node; a second client, beside the backend,
reaches it neither way; a drop is a DROPPED flow naming the policy."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from clusterkit import cluster_up
from test_netpol_e2e import _client_pod, answers, apply, documents

pytestmark = pytest.mark.root

SERVER = {"apiVersion": "v1", "kind": "Pod",
          "metadata": {"name": "web", "namespace": "np", "labels": {"pod": "web"}},
          "spec": {"nodeSelector": {"kubernetes.io/hostname": "node-1"},
                   "terminationGracePeriodSeconds": 1, "containers": [{
                       "name": "c", "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
                       "args": ["serve-hostname", "--tcp", "--http=false", "--port", "80"],
                       "ports": [{"containerPort": 80}]}]}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with cluster_up(tmp_path_factory.mktemp("netpol-nft"), "--proxy-mode", "nftables") as c:
        c.kubectl("apply", "-f", "-", input=documents(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "np"}},
            SERVER, _client_pod("np", "allowed", "node-2", "allowed"),
            _client_pod("np", "denied", "node-1", "denied"),
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "np"},
             "spec": {"selector": {"pod": "web"}, "ports": [{"port": 80, "protocol": "TCP"}]}}))
        c.wait("pods running", lambda: [p["status"].get("phase") for p in c.get(
            "pods", "-n", "np")["items"]] == ["Running"] * 3, timeout=120)
        yield c


def test_a_policy_holds_through_the_kernels_dnat(cluster: Any) -> None:
    from knet.dataplane.names import pod_netns

    ip = cluster.get("service", "web", "-n", "np")["spec"]["clusterIP"]
    web_ip = cluster.get("pod", "web", "-n", "np")["status"]["podIP"]
    cluster.wait("endpoints of web", lambda: cluster.get(
        "endpointslices", "-n", "np", "-l", "kubernetes.io/service-name=web")["items"][0]
        .get("endpoints"), timeout=30)

    def reach(name: str, to: str) -> bool:
        pod = cluster.get("pod", name, "-n", "np")
        return answers(pod_netns(pod["spec"]["nodeName"], f"np/{name}"), to, 80, timeout=3)

    assert [reach("allowed", ip), reach("denied", ip)] == [True, True]   # open by default
    apply(cluster, "np", "only-allowed", {"podSelector": {"matchLabels": {"pod": "web"}},
                                          "ingress": [{"from": [{"podSelector": {
                                              "matchLabels": {"pod": "allowed"}}}]}]})
    cluster.wait("the policy enforced", lambda: not reach("denied", ip), timeout=20)
    assert [reach("allowed", ip), reach("allowed", web_ip)] == [True, True]
    assert [reach("denied", ip), reach("denied", web_ip)] == [False, False]
    r = cluster.knet("flows", "--verdict", "DROPPED", "--state-dir", str(cluster.state_dir))
    assert "np/only-allowed" in r.stdout, r.stdout
