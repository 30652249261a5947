"""kube-proxy's nftables mode end to end (`knet up --proxy-mode nftables`), from pods with real
curl and from the host: the upstream e2e Service behaviours in this mode — a ClusterIP spreads
over every backend on both nodes, ClientIP affinity sticks (timed sets), no endpoints is
refused (curl 7), NodePort from the host, the source pod IP preserved (agnhost /clientip),
hairpin, flow records and `knet trace` naming the endpoint chosen, and no table left behind
when the proxy stops or the cluster goes down."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from clusterkit import cluster_up

from knet.flows.cluster import NodeView, proxy_flows

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.39"
APP = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 4
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: netexec
        image: {AGNHOST}
        args: ["netexec", "--http-port=8080"]
        readinessProbe: {{httpGet: {{path: /hostname, port: 8080}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080, name: http}}]
---
apiVersion: v1
kind: Service
metadata: {{name: sticky}}
spec:
  selector: {{app: web}}
  sessionAffinity: ClientIP
  sessionAffinityConfig: {{clientIP: {{timeoutSeconds: 60}}}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web-np}}
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080, nodePort: 30090}}]
---
apiVersion: v1
kind: Service
metadata: {{name: empty}}
spec:
  type: NodePort
  selector: {{app: nothing-matches}}
  ports: [{{port: 80, nodePort: 30091}}]
"""


def client_pod(name: str, node: str) -> str:
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  nodeName: {node}
  containers:
  - {{name: c, image: busybox, command: ["sleep", "3600"]}}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with cluster_up(tmp_path_factory.mktemp("nftmode"), "--proxy-mode", "nftables",
                    timeout=120) as c:
        c.kubectl("apply", "-f", "-", input=APP + "---" + client_pod("client", "node-1")
                  + "---" + client_pod("client2", "node-2"))
        c.ready_pods("app=web", 4, timeout=90)
        c.ready_pods("!app", 2, timeout=60)
        yield c
    assert "kube-proxy" not in _nft_tables(None)


def _nft_tables(netns: str | None) -> str:
    cmd = ["nft", "list", "tables"]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout


def _nft(netns: str, *args: str) -> str:
    return subprocess.run(["ip", "netns", "exec", netns, "nft", *args], capture_output=True,
                          text=True, check=True).stdout


def _backends(c: Any) -> dict[str, str]:
    """web pod name -> node."""
    return {p["metadata"]["name"]: p["spec"]["nodeName"] for p in c.ready_pods("app=web", 4)}


def _curl_loop(c: Any, pod: str, url: str, n: int) -> list[str]:
    script = f"for i in $(seq {n}); do curl -s -m 3 {url}; echo; done"
    return [line for line in c.exec(pod, "sh", "-c", script).stdout.split() if line]


def test_the_node_is_programmed_in_kube_proxys_nftables_shape(cluster: Any) -> None:
    text = _nft("knet-node-1", "list", "table", "ip", "kube-proxy")
    for part in ("map service-ips", "map service-nodeports", "map no-endpoint-services",
                 "chain services", "chain masquerading", "chain reject-chain",
                 "-default/web/tcp/http", "numgen random mod 4 vmap",
                 "goto service-", "dnat to 10.244.", "masquerade fully-random",
                 "fib daddr type local", "tcp . 30090 : goto external-",
                 "tcp . 30091 : goto reject-chain", "timeout 1m"):
        assert part in text, f"{part!r} not in the node's table:\n{text}"
    # no userspace listener: nothing of the proxy listens in the node netns on port 80
    ss = subprocess.run(["ip", "netns", "exec", "knet-node-1", "ss", "-ltnH"],
                        capture_output=True, text=True, check=True).stdout
    assert not any(line.split()[3].endswith(":80") for line in ss.splitlines()), ss


def test_cluster_ip_reaches_every_backend_on_both_nodes(cluster: Any) -> None:
    backends = _backends(cluster)
    names = _curl_loop(cluster, "client", "http://web/hostname", 60)
    counts = collections.Counter(names)
    assert set(counts) == set(backends), counts           # random: all 4 in 60 tries
    assert {backends[n] for n in counts} == {"node-1", "node-2"}  # same-node and cross-node


def test_source_pod_ip_is_preserved(cluster: Any) -> None:
    client_ip = cluster.get("pod", "client")["status"]["podIP"]
    seen = _curl_loop(cluster, "client", "http://web/clientip", 20)
    assert len(seen) == 20 and {s.rsplit(":", 1)[0] for s in seen} == {client_ip}, seen


def test_session_affinity_sticks_per_client(cluster: Any) -> None:
    one = _curl_loop(cluster, "client", "http://sticky/hostname", 20)
    two = _curl_loop(cluster, "client2", "http://sticky/hostname", 20)
    assert len(set(one)) == 1 and len(one) == 20, collections.Counter(one)
    assert len(set(two)) == 1 and len(two) == 20, collections.Counter(two)
    client_ip = cluster.get("pod", "client")["status"]["podIP"]
    sets = _nft("knet-node-1", "list", "table", "ip", "kube-proxy")
    assert f"{client_ip} expires" in sets, sets           # the timed affinity set holds it


def test_no_endpoints_is_connection_refused(cluster: Any) -> None:
    t0 = time.monotonic()
    r = cluster.exec("client", "curl", "-s", "-m", "5", "http://empty/", check=False)
    assert r.returncode == 7, r                           # ECONNREFUSED, as kube-proxy's reject
    assert time.monotonic() - t0 < 3
    client_ip = cluster.get("pod", "client")["status"]["podIP"]
    refused = cluster.wait("a REFUSED flow record", lambda: [
        f for f in _flows(cluster) if f["service"] == "default/empty"
        and f["client_ip"] == client_ip and f["verdict"] == "REFUSED"], timeout=5)
    assert refused[-1]["reason"] == "nftables reject-chain (no endpoints)", refused
    with pytest.raises(urllib.error.URLError) as err:
        urllib.request.urlopen("http://172.18.0.2:30091/", timeout=3)
    assert isinstance(err.value.reason, ConnectionRefusedError), err.value


def test_nodeport_from_the_host_at_every_node_ip(cluster: Any) -> None:
    backends = _backends(cluster)
    for node in cluster.get("nodes")["items"]:
        ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
        got = {urllib.request.urlopen(f"http://{ip}:30090/hostname", timeout=5).read().decode()
               for _ in range(20)}
        assert got <= set(backends) and len(got) >= 2, got
        # NodePort traffic of externalTrafficPolicy Cluster is masqueraded, as kube-proxy does
        seen = urllib.request.urlopen(f"http://{ip}:30090/clientip", timeout=5).read().decode()
        assert not seen.startswith("172.18.0.1:"), seen


def test_hairpin_a_backend_reaches_itself_through_its_service(cluster: Any) -> None:
    pod = cluster.get("pods", "-l", "app=web")["items"][0]
    name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
    cip = cluster.get("service", "web")["spec"]["clusterIP"]
    url = (f"http://{ip}:8080/dial?request=hostname&protocol=http&host={cip}&port=80"
           "&tries=40")
    out = cluster.exec("client", "curl", "-s", "-m", "30", url).stdout
    responses = json.loads(out)["responses"]
    assert name in responses, out                         # hairpin: masqueraded, answered


UDP_APP = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: udp-echo}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: udp-echo}}}}
  template:
    metadata: {{labels: {{app: udp-echo}}}}
    spec:
      containers:
      - name: netexec
        image: {AGNHOST}
        args: ["netexec", "--http-port=8080", "--udp-port=8081"]
        readinessProbe: {{httpGet: {{path: /healthz, port: 8080}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: udp-echo}}
spec:
  selector: {{app: udp-echo}}
  ports: [{{port: 53530, targetPort: 8081, protocol: UDP}}]
"""


def test_udp_traffic_is_preserved_when_the_server_pod_cycles(cluster: Any) -> None:
    """Upstream's "should be able to preserve UDP traffic when server pod cycles": one client
    port keeps sending; the pod is replaced; the stale conntrack entry must not keep the
    flow on the gone pod."""
    cluster.kubectl("apply", "-f", "-", input=UDP_APP)
    (old,) = cluster.ready_pods("app=udp-echo", 1, timeout=60)
    cip = cluster.get("service", "udp-echo")["spec"]["clusterIP"]
    script = ("for i in $(seq 120); do echo hostname | nc -u -w 1 -p 34567 "
              f"{cip} 53530; echo; sleep 0.1; done")
    client = subprocess.Popen(
        ["kubectl", "--kubeconfig", str(cluster.kubeconfig), "exec", "client", "--", "sh",
         "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(3)
    cluster.kubectl("delete", "pod", old["metadata"]["name"], "--wait=false")
    cluster.wait("a new udp-echo pod", lambda: [
        p for p in cluster.ready_pods("app=udp-echo", 1, timeout=60)
        if p["metadata"]["name"] != old["metadata"]["name"]], timeout=60)
    out, _ = client.communicate(timeout=240)
    names = [line for line in out.split() if line.startswith("udp-echo-")]
    assert names and names[0] == old["metadata"]["name"], out
    assert names[-1] != old["metadata"]["name"], out   # the same client port reached the new pod


def _flows(c: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name in ("node-1", "node-2"):
        sock = c.state_dir / "proxy" / f"{name}.sock"
        out += proxy_flows(NodeView(name, "", "", "", "", flows_socket=str(sock)), timeout=5)
    return out


def test_flows_name_the_backend_chosen_from_conntrack(cluster: Any) -> None:
    client_ip = cluster.get("pod", "client")["status"]["podIP"]
    start = time.time()
    names = _curl_loop(cluster, "client", "http://web/hostname", 6)
    time.sleep(0.5)
    flows = sorted((f for f in _flows(cluster) if f["time"] >= start - 0.5
                    and f["service"] == "default/web" and f["client_ip"] == client_ip),
                   key=lambda f: f["time"])
    assert [f["endpoint_pod"].split("/")[-1] for f in flows] == names, flows
    assert all(f["node"] == "node-1" and f["verdict"] == "FORWARDED" for f in flows), flows
    assert all(f["reason"].startswith("nftables endpoint-") for f in flows), flows
    assert all(f["client_pod"] == "default/client" for f in flows), flows
    assert all(f["bytes_sent"] > 0 and f["bytes_received"] > 0 for f in flows), flows
    r = cluster.knet("flows", "--state-dir", str(cluster.state_dir), "-o", "json")
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]  # ndjson
    assert any(row.get("service") == "default/web" and row.get("endpoint_pod")
               for row in rows), r.stdout


def test_trace_shows_the_dnat_hop(cluster: Any) -> None:
    for _ in range(4):   # random backends: same node and other node alike
        _trace_once(cluster)


def _trace_once(cluster: Any) -> None:
    r = cluster.knet("trace", "client", "svc/web:80", "--state-dir", str(cluster.state_dir))
    out = r.stdout
    assert "DNAT node-1 (kube-proxy nftables)" in out and "nftables endpoint-" in out, out
    assert "answered by default/web-" in out and "BROKEN" not in out, out
    assert any(f"default/{name}" in out for name in _backends(cluster)), out


def test_a_stopped_proxy_removes_its_table_and_up_brings_it_back(cluster: Any) -> None:
    rec = json.loads((cluster.state_dir / "cluster.json").read_text())
    pid = rec["procs"]["kube-proxy-node-2"]["pid"]
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while "kube-proxy" in _nft_tables("knet-node-2") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "kube-proxy" not in _nft_tables("knet-node-2")
    cluster.knet("up", "--state-dir", str(cluster.state_dir), "--timeout", "60")
    deadline = time.monotonic() + 15
    while "kube-proxy" not in _nft_tables("knet-node-2") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "kube-proxy" in _nft_tables("knet-node-2")
    names = _curl_loop(cluster, "client2", "http://web/hostname", 8)
    assert len(names) == 8, names
    # the recorded mode is kept, and a different one is refused on a running cluster
    bad = cluster.knet("up", "--proxy-mode", "userspace", "--state-dir", str(cluster.state_dir),
                       check=False)
    assert bad.returncode != 0 and "--proxy-mode nftables" in bad.stdout + bad.stderr, bad
