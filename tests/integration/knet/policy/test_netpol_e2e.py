"""The upstream netpol e2e suite's structure on a real 2-node knet cluster: namespaces x, y, z
x pods a, b, c, each serving TCP and UDP on ports 80 and 81 (agnhost serve-hostname, container
ports named serve-80-tcp …); each test applies policies with kubectl, states the expected
reachability matrix, and probes every ordered pair for real with `knet netpol probe` (a
pod to itself is ignored, as upstream does). Probes are retried while the enforcers catch up
(as upstream's probe loop does); a matrix that never matches fails with both tables."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from clusterkit import cluster_up

pytestmark = pytest.mark.root

NSS, PODS = ("x", "y", "z"), ("a", "b", "c")
KEYS = [f"{ns}/{p}" for ns in NSS for p in PODS]


def _container(port: int) -> str:
    return (f"  - name: cont-{port}\n    image: registry.k8s.io/e2e-test-images/agnhost:2.53\n"
            f"    args: [serve-hostname, --tcp, --udp, --http=false, --port, \"{port}\"]\n"
            f"    ports:\n    - {{name: serve-{port}-tcp, containerPort: {port}, protocol: TCP}}\n"
            f"    - {{name: serve-{port}-udp, containerPort: {port}, protocol: UDP}}\n")


MANIFESTS = "".join(
    f"---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: \"{ns}\"}}\n" for ns in NSS) + "".join(
    f"---\napiVersion: v1\nkind: Pod\nmetadata: {{name: \"{p}\", namespace: \"{ns}\", labels: {{pod: \"{p}\"}}}}\n"
    f"spec:\n  terminationGracePeriodSeconds: 1\n  containers:\n{_container(80)}{_container(81)}"
    for ns in NSS for p in PODS)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with cluster_up(tmp_path_factory.mktemp("netpol")) as c:
        c.kubectl("apply", "-f", "-", input=MANIFESTS)
        for ns in NSS:
            c.wait(f"pods of {ns} running", lambda ns=ns: all(
                p["status"].get("phase") == "Running" and p["status"].get("podIP")
                for p in c.get("pods", "-n", ns)["items"]) and len(
                c.get("pods", "-n", ns)["items"]) == 3, timeout=120)
        yield c


@pytest.fixture(autouse=True)
def clean_policies(cluster: Any) -> Iterator[None]:
    yield
    for ns in NSS:
        cluster.kubectl("delete", "networkpolicy", "--all", "-n", ns, "--wait=false")


def _table(allowed: dict[tuple[str, str], bool]) -> str:
    lines = ["-\t" + "\t".join(KEYS)]
    for s in KEYS:
        lines.append(s + "\t" + "\t".join("." if allowed[(s, d)] else "X" for d in KEYS))
    return "\n".join(lines)


def expected(default: bool = True, *, to: dict[str, bool] | None = None,
             frm: dict[str, bool] | None = None,
             pairs: dict[tuple[str, str], bool] | None = None) -> dict[tuple[str, str], bool]:
    """A matrix: `default`, then whole columns (`to`), whole rows (`frm`), then pairs."""
    m = {(s, d): default for s in KEYS for d in KEYS}
    for d, v in (to or {}).items():
        m.update({(s, d): v for s in KEYS})
    for s, v in (frm or {}).items():
        m.update({(s, d): v for d in KEYS})
    m.update(pairs or {})
    return m


def probe(cluster: Any, port: int = 80, proto: str = "tcp") -> dict[tuple[str, str], bool]:
    out = cluster.knet("netpol", "probe", "-n", "x", "-n", "y", "-n", "z", "--port", str(port),
                       "--protocol", proto, "--timeout", "0.8", "--state-dir",
                       str(cluster.state_dir), timeout=120).stdout
    lines = [ln for ln in out.splitlines() if "\t" in ln]
    header = lines[0].split("\t")[1:]
    assert header == KEYS, out
    return {(row.split("\t")[0], header[i]): cell == "."
            for row in lines[1:] for i, cell in enumerate(row.split("\t")[1:])}


def check(cluster: Any, want: dict[tuple[str, str], bool], port: int = 80, proto: str = "tcp",
          tries: int = 4) -> None:
    got: dict[tuple[str, str], bool] = {}
    for _ in range(tries):
        got = probe(cluster, port, proto)
        if all(got[k] == want[k] for k in want if k[0] != k[1]):
            return
        time.sleep(0.5)
    diff = [k for k in want if k[0] != k[1] and got[k] != want[k]]
    raise AssertionError(f"{port}/{proto}: expected\n{_table(want)}\nobserved\n{_table(got)}\n"
                         f"different: {diff}")


def apply(cluster: Any, ns: str, name: str, spec: dict[str, Any]) -> None:
    obj = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": name, "namespace": ns}, "spec": spec}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))


def _ns(name: str) -> dict[str, Any]:
    return {"matchLabels": {"kubernetes.io/metadata.name": name}}


A = {"matchLabels": {"pod": "a"}}


def test_without_policies_everything_is_reachable_across_both_nodes(cluster: Any) -> None:
    nodes = {p["spec"]["nodeName"] for ns in NSS for p in cluster.get("pods", "-n", ns)["items"]}
    assert nodes == {"node-1", "node-2"}      # pairs on one node and across nodes are probed
    check(cluster, expected(True))
    check(cluster, expected(True), 81, "udp")


def test_default_deny_ingress_then_drops_in_flows_naming_the_policy(cluster: Any) -> None:
    apply(cluster, "x", "deny-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]})
    check(cluster, expected(True, to={k: False for k in KEYS if k.startswith("x/")}))
    out = cluster.knet("flows", "--verdict", "DROPPED", "--to-pod", "x/a", "--state-dir",
                       str(cluster.state_dir)).stdout
    assert "DROPPED tcp netpol ingress default deny: x/a isolated by x/deny-ingress" in out, out
    rows = [json.loads(ln) for ln in cluster.knet(
        "flows", "--verdict", "DROPPED", "-o", "json", "--state-dir",
        str(cluster.state_dir)).stdout.splitlines()]
    from_y = [r for r in rows if r.get("client_pod") == "y/b" and r.get("endpoint_pod") == "x/a"]
    assert from_y and from_y[0]["netpol_policies"] == ["x/deny-ingress"]


def test_default_deny_egress(cluster: Any) -> None:
    apply(cluster, "x", "deny-egress", {"podSelector": {}, "policyTypes": ["Egress"]})
    check(cluster, expected(True, frm={k: False for k in KEYS if k.startswith("x/")}),
          80, "udp")


def test_allow_from_a_namespace(cluster: Any) -> None:
    apply(cluster, "x", "allow-from-y", {"podSelector": A, "ingress": [{"from": [
        {"namespaceSelector": _ns("y")}]}]})
    check(cluster, expected(True, to={"x/a": False},
                            pairs={("y/a", "x/a"): True, ("y/b", "x/a"): True,
                                   ("y/c", "x/a"): True}))


def test_and_in_one_peer_then_or_across_two_peers_on_live_traffic(cluster: Any) -> None:
    apply(cluster, "x", "peer", {"podSelector": A, "ingress": [{"from": [
        {"namespaceSelector": _ns("y"), "podSelector": {"matchLabels": {"pod": "b"}}}]}]})
    check(cluster, expected(True, to={"x/a": False}, pairs={("y/b", "x/a"): True}))
    # the same policy changed in place: two peers (OR), enforced on the next connections
    apply(cluster, "x", "peer", {"podSelector": A, "ingress": [{"from": [
        {"namespaceSelector": _ns("y")}, {"podSelector": {"matchLabels": {"pod": "b"}}}]}]})
    check(cluster, expected(True, to={"x/a": False},
                            pairs={("y/a", "x/a"): True, ("y/b", "x/a"): True,
                                   ("y/c", "x/a"): True, ("x/b", "x/a"): True}))


def test_named_ports_and_a_port_range(cluster: Any) -> None:
    apply(cluster, "x", "named", {"podSelector": A, "ingress": [{"ports": [
        {"port": "serve-81-udp", "protocol": "UDP"}]}]})
    check(cluster, expected(True), 81, "udp")
    check(cluster, expected(True, to={"x/a": False}), 81, "tcp")
    apply(cluster, "x", "range", {"podSelector": A, "ingress": [{"ports": [
        {"port": 81, "endPort": 90, "protocol": "TCP"}]}]})
    check(cluster, expected(True), 81, "tcp")
    check(cluster, expected(True, to={"x/a": False}), 80, "tcp")


def test_ipblock_with_except(cluster: Any) -> None:
    yb = cluster.get("pod", "b", "-n", "y")["status"]["podIP"]
    apply(cluster, "x", "cidr", {"podSelector": A, "ingress": [{"from": [
        {"ipBlock": {"cidr": "10.244.0.0/16", "except": [f"{yb}/32"]}}]}]})
    check(cluster, expected(True, pairs={("y/b", "x/a"): False}))


def test_egress_with_dns_allowed(cluster: Any) -> None:
    from knet.dataplane.names import pod_netns
    from knet.flows.probe import dns_lookup

    dns = cluster.get("pods", "-n", "kube-system", "-l", "k8s-app=kube-dns")["items"][0]
    xa = cluster.get("pod", "a", "-n", "x")
    netns = pod_netns(xa["spec"]["nodeName"], "x/a")

    def lookup() -> str:   # straight to the DNS pod: the pod-to-pod path policies govern
        return dns_lookup(netns, "kubernetes.default", namespace="x",
                          server=dns["status"]["podIP"]).rcode

    assert lookup() == "NOERROR"
    apply(cluster, "x", "deny-egress", {"podSelector": {}, "policyTypes": ["Egress"]})
    cluster.wait("DNS blocked", lambda: lookup() != "NOERROR", timeout=15)
    apply(cluster, "x", "allow-dns-and-y", {"podSelector": {}, "policyTypes": ["Egress"],
                                            "egress": [
        {"to": [{"namespaceSelector": _ns("kube-system")}],
         "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
        {"to": [{"namespaceSelector": _ns("y")}]}]})
    cluster.wait("DNS allowed again", lambda: lookup() == "NOERROR", timeout=15)
    check(cluster, expected(True, frm={k: False for k in KEYS if k.startswith("x/")},
                            pairs={(f"x/{s}", f"y/{d}"): True for s in PODS for d in PODS}))


def test_explain_says_why(cluster: Any) -> None:
    apply(cluster, "x", "from-y-b", {"podSelector": A, "ingress": [{"from": [
        {"namespaceSelector": _ns("y"), "podSelector": {"matchLabels": {"pod": "b"}}}]}]})
    ok = cluster.knet("netpol", "explain", "y/b", "x/a", "80", "--state-dir",
                      str(cluster.state_dir)).stdout
    assert "y/b -> x/a 80/tcp: ALLOWED" in ok and "allowed by x/from-y-b rule 0" in ok, ok
    no = cluster.knet("netpol", "explain", "y/c", "x/a", "80/tcp", "--state-dir",
                      str(cluster.state_dir), check=False)
    assert no.returncode == 1
    assert "ingress: x/a isolated by x/from-y-b; no rule matches: DROPPED (default deny)" in \
        no.stdout, no.stdout


def documents(*objs: dict[str, Any]) -> str:
    """Objects as one multi-document YAML stream for `kubectl apply -f -`."""
    import yaml

    return yaml.safe_dump_all(objs)


def answers(netns: str, ip: str, port: int, timeout: float = 6.0) -> bool:
    """serve-hostname answered through `ip:port`: its hostname came back. Through the
    userspace proxy a TCP connect to a ClusterIP always succeeds (the node's proxy accepts);
    a denied backend shows as no answer (the proxy's dials are dropped, then it resets)."""
    import socket

    from knet.dataplane.nsutil import in_netns

    with in_netns(netns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect((ip, port))
        return bool(sock.recv(512))
    except OSError:
        return False
    finally:
        sock.close()


def _client_pod(ns: str, name: str, node: str, label: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": name, "namespace": ns, "labels": {"pod": label}}, "spec": {
        "nodeSelector": {"kubernetes.io/hostname": node}, "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}}


def test_policies_hold_for_traffic_through_a_service(cluster: Any) -> None:
    from knet.dataplane.names import pod_netns

    node_a = cluster.get("pod", "a", "-n", "x")["spec"]["nodeName"]
    other = "node-2" if node_a == "node-1" else "node-1"
    # the allowed client on the other node, the denied one beside x/a: today both are wrong
    cluster.kubectl("apply", "-f", "-", input=documents(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "w"}},
        _client_pod("w", "allowed", other, "b"), _client_pod("w", "denied", node_a, "c"),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc-a", "namespace": "x"},
         "spec": {"selector": {"pod": "a"}, "ports": [{"port": 80, "protocol": "TCP"}]}}))
    try:
        ip = cluster.get("service", "svc-a", "-n", "x")["spec"]["clusterIP"]
        apply(cluster, "x", "from-w-b", {"podSelector": A, "ingress": [{"from": [
            {"namespaceSelector": _ns("w"), "podSelector": {"matchLabels": {"pod": "b"}}}]}]})
        cluster.wait("clients running", lambda: all(
            p["status"].get("phase") == "Running" for p in cluster.get("pods", "-n", "w")
            ["items"]), timeout=60)
        cluster.wait("endpoints of svc-a", lambda: cluster.get(
            "endpointslices", "-n", "x", "-l", "kubernetes.io/service-name=svc-a")["items"][0]
            .get("endpoints"), timeout=30)

        def through_service(name: str) -> bool:
            pod = cluster.get("pod", name, "-n", "w")
            return answers(pod_netns(pod["spec"]["nodeName"], f"w/{name}"), ip, 80)

        time.sleep(1.0)
        assert [through_service("allowed"), through_service("denied")] == [True, False]
    finally:
        cluster.kubectl("delete", "namespace", "w", "--wait=false", check=False)
        cluster.kubectl("delete", "service", "svc-a", "-n", "x", "--wait=false", check=False)
