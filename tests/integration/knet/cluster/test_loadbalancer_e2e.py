"""Issue 16 item 4 end to end: `type: LoadBalancer` on a real 2-node cluster, driven with
kubectl and reached for real from the host side (this sandbox's host netns) and from pods.

A LoadBalancer gets an address from the pool (EXTERNAL-IP in `kubectl get svc`), announced by
one node (a /32 route on the host to it) and answered on the Service port; a second Service
asking for the same address stays <pending> with MetalLB's Warning; loadBalancerSourceRanges
drop the host (outside) and let pods (inside) through; externalTrafficPolicy Local is
announced by the node with the endpoint, and healthCheckNodePort answers 200 there and 503 on
the other node in kube-proxy's shape; an externalIP that is a node's address is served there;
`allocateLoadBalancerNodePorts: false` allocates no nodePort; bad source ranges are a 422;
deleting a Service gives its address to the one waiting for it. Each test runs in both
kube-proxy modes (userspace listeners, nftables DNAT), one cluster per mode."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from clusterkit import PROXY_MODES, WEB_DEPLOYMENT, Cluster, client_pod, in_mode

NODE_IPS = {"node-1": "172.18.0.2", "node-2": "172.18.0.3"}

APP = WEB_DEPLOYMENT + """---
apiVersion: apps/v1
kind: Deployment
metadata: {name: solo}
spec:
  replicas: 1
  selector: {matchLabels: {app: solo}}
  template:
    metadata: {labels: {app: solo}}
    spec:
      nodeSelector: {kubernetes.io/hostname: node-2}
      containers:
      - name: whoami
        image: knet/whoami
        ports: [{containerPort: 80, name: http}]
        readinessProbe: {httpGet: {path: /health, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: lb}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 8080, targetPort: http, name: http}]
---
apiVersion: v1
kind: Service
metadata: {name: lb-ranges}
spec:
  type: LoadBalancer
  selector: {app: web}
  loadBalancerSourceRanges: [10.244.0.0/16]
  ports: [{port: 8080, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: lb-local}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: solo}
  ports: [{port: 8080, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: lb-nonp}
spec:
  type: LoadBalancer
  allocateLoadBalancerNodePorts: false
  selector: {app: web}
  ports: [{port: 8080, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: ext}
spec:
  selector: {app: web}
  externalIPs: [172.18.0.2]
  ports: [{port: 8081, targetPort: http}]
""" + "---" + client_pod()


@pytest.fixture(scope="module", params=PROXY_MODES)
def cluster(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """conftest's cluster, once per kube-proxy mode: every test here runs in both."""
    with in_mode(tmp_path_factory.mktemp(f"lb-{request.param}"), request.param) as c:
        yield c


def _columns(c: Cluster, name: str) -> dict[str, str]:
    out = c.kubectl("get", "svc", name).stdout.splitlines()
    return dict(zip(out[0].split(), out[1].split(), strict=False))


def _external_ip(c: Cluster, name: str) -> str:
    def cond() -> str | None:
        ip = _columns(c, name)["EXTERNAL-IP"]
        return ip if ip not in ("<pending>", "<none>") else None
    return str(c.wait(f"{name}'s EXTERNAL-IP", cond, timeout=60))


def _get(url: str, timeout: float = 3) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _status(url: str, timeout: float = 2) -> int:
    """The HTTP status, 0 when there is no answer (yet)."""
    try:
        return _get(url, timeout)[0]
    except OSError:
        return 0


def _hostname(body: str) -> str:
    return next(line.split(": ", 1)[1] for line in body.splitlines()
                if line.startswith("Hostname: "))


def _events(c: Cluster, name: str) -> list[tuple[str, str, str]]:
    items = c.get("events")["items"]
    return [(e["type"], e["reason"], e["message"]) for e in items
            if e["involvedObject"]["name"] == name]


def test_setup(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=APP)
    cluster.ready_pods("app=web", 3)
    cluster.ready_pods("app=solo", 1)
    cluster.ready_pods("!app", 1)


def test_load_balancer_reached_from_the_host(cluster: Cluster) -> None:
    ip = _external_ip(cluster, "lb")
    assert ip.startswith("172.18.255."), ip
    svc = cluster.get("svc", "lb")
    node = svc["metadata"]["annotations"]["lb.knet.dev/announced-by"]
    route = subprocess.run(["ip", "route", "show", f"{ip}/32"], capture_output=True,
                           text=True, check=True).stdout
    assert f"via {NODE_IPS[node]}" in route, route
    pods = {p["metadata"]["name"] for p in cluster.ready_pods("app=web", 3)}

    def answers() -> set[str] | None:
        got = set()
        for _ in range(9):
            try:
                status, body = _get(f"http://{ip}:8080/")
            except OSError:            # the announcement may land a moment after the status
                return None
            assert status == 200
            got.add(_hostname(body))
        return got if got == pods else None
    cluster.wait("the LoadBalancer balancing over every pod, from the host", answers,
                 timeout=30)
    inside = cluster.exec("client", "curl", "-s", "-m", "3", f"http://{ip}:8080/").stdout
    assert _hostname(inside) in pods                      # and from a pod
    assert ("Normal", "IPAllocated", f'Assigned IP ["{ip}"]') in _events(cluster, "lb")


def test_same_address_twice_stays_pending(cluster: Cluster) -> None:
    ip = _external_ip(cluster, "lb")
    cluster.kubectl("apply", "-f", "-", input=f"""
apiVersion: v1
kind: Service
metadata: {{name: lb-twin}}
spec:
  type: LoadBalancer
  loadBalancerIP: {ip}
  selector: {{app: web}}
  ports: [{{port: 8080, targetPort: http}}]
""")
    want = ("Warning", "AllocationFailed", ('Failed to allocate IP for "default/lb-twin": '
            'can\'t change sharing key for "default/lb-twin", address also in use by '
            'default/lb'))
    cluster.wait("lb-twin's AllocationFailed event", lambda: want in _events(cluster, "lb-twin"))
    assert _columns(cluster, "lb-twin")["EXTERNAL-IP"] == "<pending>"


def test_source_ranges_drop_the_host_and_pass_pods(cluster: Cluster) -> None:
    ip = _external_ip(cluster, "lb-ranges")
    cluster.wait("pods pass", lambda: cluster.exec(
        "client", "curl", "-s", "-m", "3", f"http://{ip}:8080/", check=False).returncode == 0)
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect((ip, 8080))
    except TimeoutError:
        pass                                       # dropped: no answer at all, like kube-proxy
    else:
        raise AssertionError(f"the host (172.18.0.1) reached {ip}:8080 despite the ranges")
    finally:
        s.close()
    cluster.kubectl("patch", "svc", "lb-ranges", "--type", "json", "-p",
                    '[{"op": "remove", "path": "/spec/loadBalancerSourceRanges"}]')
    cluster.wait("the host passes once the ranges are gone",
                 lambda: _status(f"http://{ip}:8080/") == 200, timeout=20)


def test_local_policy_and_health_check_node_port(cluster: Cluster) -> None:
    ip = _external_ip(cluster, "lb-local")
    svc = cluster.get("svc", "lb-local")
    hc = svc["spec"]["healthCheckNodePort"]
    [solo] = cluster.ready_pods("app=solo", 1)
    assert solo["spec"]["nodeName"] == "node-2"
    cluster.wait("node-2 announces lb-local", lambda: cluster.get("svc", "lb-local")[
        "metadata"].get("annotations", {}).get("lb.knet.dev/announced-by") == "node-2")

    def health(node: str) -> tuple[int, dict[str, Any]]:
        status, body = _get(f"http://{NODE_IPS[node]}:{hc}/healthz")
        return status, json.loads(body)
    cluster.wait("the health check answers",
                 lambda: _status(f"http://{NODE_IPS['node-2']}:{hc}/healthz") == 200)
    assert health("node-2") == (200, {"service": {"namespace": "default", "name": "lb-local"},
                                      "localEndpoints": 1, "serviceProxyHealthy": True})
    assert health("node-1") == (503, {"service": {"namespace": "default", "name": "lb-local"},
                                      "localEndpoints": 0, "serviceProxyHealthy": True})
    status, body = _get(f"http://{ip}:8080/")
    assert status == 200 and _hostname(body) == solo["metadata"]["name"]


def test_external_ip_of_a_node_and_no_node_ports(cluster: Cluster) -> None:
    pods = {p["metadata"]["name"] for p in cluster.ready_pods("app=web", 3)}
    cluster.wait("the externalIP answers", lambda: _status("http://172.18.0.2:8081/") == 200)
    assert _hostname(_get("http://172.18.0.2:8081/")[1]) in pods
    assert _columns(cluster, "ext")["EXTERNAL-IP"] == "172.18.0.2"
    _external_ip(cluster, "lb-nonp")
    assert _columns(cluster, "lb-nonp")["PORT(S)"] == "8080/TCP"     # no nodePort


def test_bad_source_ranges_are_rejected(cluster: Cluster) -> None:
    r = cluster.kubectl("apply", "-f", "-", check=False, input="""
apiVersion: v1
kind: Service
metadata: {name: lb-bad}
spec:
  type: LoadBalancer
  loadBalancerSourceRanges: [everyone]
  ports: [{port: 80}]
""")
    assert r.returncode != 0
    assert ('The Service "lb-bad" is invalid: spec.LoadBalancerSourceRanges[0]: Invalid value: '
            '"everyone": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)'
            in r.stderr), r.stderr


def test_delete_gives_the_address_to_the_waiting_service(cluster: Cluster) -> None:
    ip = _external_ip(cluster, "lb")
    cluster.kubectl("delete", "svc", "lb")
    assert _external_ip(cluster, "lb-twin") == ip
    pods = {p["metadata"]["name"] for p in cluster.ready_pods("app=web", 3)}
    cluster.wait("lb-twin answers on the address from the host",
                 lambda: _status(f"http://{ip}:8080/") == 200)
    assert _hostname(_get(f"http://{ip}:8080/")[1]) in pods
