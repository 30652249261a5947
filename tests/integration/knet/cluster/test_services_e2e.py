"""Issue 5 end to end, from a client pod with real curl, dig and nc: Services balanced
round-robin by the node's proxy, ClientIP affinity and its timeout, cluster DNS names,
scaling, readiness, UDP, NodePort from the host, refusal without endpoints, the HTTP mesh
layer's retries, and the flow records that explain each choice."""

from __future__ import annotations

import collections
import time
import urllib.request

from clusterkit import WEB_DEPLOYMENT, Cluster, client_pod

from knet.flows.cluster import NodeView, proxy_flows

APP = WEB_DEPLOYMENT + """---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http, name: http}]
---
apiVersion: v1
kind: Service
metadata: {name: sticky}
spec:
  selector: {app: web}
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 2}}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 80, targetPort: http, name: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-np}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: http, nodePort: 30080}]
""" + "---" + client_pod() + "---" + client_pod("client2")


def _hostnames(c: Cluster, pod: str, url: str, n: int) -> list[str]:
    script = (f"for i in $(seq {n}); do curl -s -m 3 {url} | sed -n 's/^Hostname: //p'; "
              "done")
    return c.exec(pod, "sh", "-c", script).stdout.split()


def test_setup(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input=APP)
    cluster.ready_pods("app=web", 3)
    cluster.ready_pods("!app", 2)


def test_round_robin_each_pod_exactly_ten_times_in_a_repeating_order(cluster: Cluster) -> None:
    names = _hostnames(cluster, "client", "http://web/", 30)
    counts = collections.Counter(names)
    pods = {p["metadata"]["name"] for p in cluster.ready_pods("app=web", 3)}
    assert set(counts) == pods and set(counts.values()) == {10}, counts
    cycle = names[:3]
    assert names == cycle * 10


def test_client_ip_affinity_pins_and_expires(cluster: Cluster) -> None:
    names = _hostnames(cluster, "client", "http://sticky/", 30)
    assert len(set(names)) == 1, collections.Counter(names)
    other = _hostnames(cluster, "client2", "http://sticky/", 6)
    assert len(set(other)) == 1  # a second client is pinned on its own
    seen = set()
    for _ in range(6):  # after 3 s of silence (> timeoutSeconds 2) the pick is new
        time.sleep(3)
        seen.update(_hostnames(cluster, "client", "http://sticky/", 1))
    assert len(seen) > 1, "affinity never expired"


def test_dns_names_headless_srv_ptr_nxdomain(cluster: Cluster) -> None:
    ip = cluster.get("svc", "web")["spec"]["clusterIP"]
    for name in ("web", "web.default", "web.default.svc.cluster.local"):
        out = cluster.exec("client", "sh", "-c", f"getent hosts {name}").stdout
        assert out.split()[0] == ip, (name, out)
    ready = sorted(p["status"]["podIP"] for p in cluster.ready_pods("app=web", 3))
    a = cluster.exec("client", "dig", "+short", "web-headless.default.svc.cluster.local").stdout
    assert sorted(a.split()) == ready
    srv = cluster.exec("client", "dig", "+short", "SRV",
                       "_http._tcp.web.default.svc.cluster.local").stdout
    assert "80 web.default.svc.cluster.local." in srv
    ptr = cluster.exec("client", "dig", "+short", "-x", ip).stdout
    assert "web.default.svc.cluster.local." in ptr
    nx = cluster.exec("client", "dig", "nope.default.svc.cluster.local").stdout
    assert "status: NXDOMAIN" in nx


def test_scale_down_and_up_moves_traffic_within_a_second(cluster: Cluster) -> None:
    cluster.kubectl("scale", "deployment", "web", "--replicas=1")
    pods = cluster.wait("one web pod", lambda: [
        p for p in cluster.get("pods", "-l", "app=web")["items"]
        if not p["metadata"].get("deletionTimestamp")] if len([
            p for p in cluster.get("pods", "-l", "app=web")["items"]
            if not p["metadata"].get("deletionTimestamp")]) == 1 else None)
    time.sleep(1)
    names = set(_hostnames(cluster, "client", "http://web/", 9))
    assert names == {pods[0]["metadata"]["name"]}
    cluster.kubectl("scale", "deployment", "web", "--replicas=3")
    new = {p["metadata"]["name"] for p in cluster.ready_pods("app=web", 3)}
    time.sleep(1)
    assert set(_hostnames(cluster, "client", "http://web/", 9)) == new


def test_pod_failing_readiness_gets_nothing(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input="""
apiVersion: v1
kind: Pod
metadata: {name: web-unready, labels: {app: web}}
spec:
  containers:
  - name: whoami
    image: knet/whoami
    ports: [{containerPort: 80, name: http}]
    readinessProbe: {tcpSocket: {port: 9999}, periodSeconds: 1}
""")
    cluster.wait("web-unready running", lambda: cluster.get("pod", "web-unready")["status"]
                 .get("phase") == "Running")
    names = _hostnames(cluster, "client", "http://web/", 12)
    assert "web-unready" not in names and len(names) == 12
    cluster.kubectl("delete", "pod", "web-unready", "--wait=true")


def test_udp_echo_through_a_service(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input="""
apiVersion: v1
kind: Pod
metadata: {name: udp-echo, labels: {app: udp-echo}}
spec:
  containers:
  - name: netexec
    image: registry.k8s.io/e2e-test-images/agnhost:2.39
    args: ["netexec", "--http-port=8080", "--udp-port=8081"]
---
apiVersion: v1
kind: Service
metadata: {name: udp-echo}
spec:
  selector: {app: udp-echo}
  ports: [{port: 53530, targetPort: 8081, protocol: UDP}]
""")
    cluster.ready_pods("app=udp-echo", 1)
    out = cluster.exec("client", "sh", "-c",
                       "echo 'echo hello-udp' | nc -u -w 2 udp-echo 53530").stdout
    assert "hello-udp" in out
    name = cluster.exec("client", "sh", "-c",
                        "echo hostname | nc -u -w 2 udp-echo 53530").stdout
    assert name.strip() == "udp-echo"


def test_nodeport_from_the_host_at_every_node_ip(cluster: Cluster) -> None:
    pods = {p["metadata"]["name"] for p in cluster.ready_pods("app=web", 3)}
    for node in cluster.get("nodes")["items"]:
        ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
        body = urllib.request.urlopen(f"http://{ip}:30080/", timeout=5).read().decode()
        assert any(f"Hostname: {p}" in body for p in pods)


def test_no_endpoints_is_refused_at_once(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input="""
apiVersion: v1
kind: Service
metadata: {name: empty}
spec:
  selector: {app: nothing-matches}
  ports: [{port: 80}]
""")
    time.sleep(0.5)
    t0 = time.monotonic()
    r = cluster.exec("client", "curl", "-s", "-m", "5", "http://empty/", check=False)
    took = time.monotonic() - t0
    # refused at once like kube-proxy's REJECT: the connect itself fails (curl 7), never an
    # accept then a reset (curl 56) nor a hang until the timeout
    assert r.returncode == 7, r
    assert took < 3


def test_http_mesh_retries_a_failing_endpoint(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", "-", input="""
apiVersion: v1
kind: Pod
metadata: {name: mesh-ok, labels: {app: mesh}}
spec:
  containers:
  - {name: echo, image: hashicorp/http-echo, args: ["-text=ok", "-listen=:5678"]}
---
apiVersion: v1
kind: Pod
metadata: {name: mesh-bad, labels: {app: mesh}}
spec:
  containers:
  - {name: echo, image: hashicorp/http-echo,
     args: ["-text=overloaded", "-listen=:5678", "-status-code=503"]}
---
apiVersion: v1
kind: Service
metadata: {name: mesh}
spec:
  selector: {app: mesh}
  ports: [{port: 80, targetPort: 5678, appProtocol: http}]
""")
    cluster.ready_pods("app=mesh", 2)
    script = "for i in $(seq 10); do curl -s -o /dev/null -w '%{http_code} ' -m 5 http://mesh/; done"
    codes = cluster.exec("client", "sh", "-c", script).stdout.split()
    assert codes == ["200"] * 10
    hdr = cluster.exec("client", "curl", "-s", "-D", "-", "-o", "/dev/null", "http://mesh/").stdout
    assert "x-knet-upstream: default/mesh-ok" in hdr.lower()


def test_http_mesh_rejects_request_smuggling(cluster: Cluster) -> None:
    """Two Content-Lengths (the classic CL.CL smuggling) from a pod with nc: a 400 with
    Connection: close, nothing forwarded (the flow has no endpoint), and curl still works."""
    start = time.time()
    raw = (r"POST / HTTP/1.1\r\nHost: mesh\r\nContent-Length: 5\r\nContent-Length: 44\r\n\r\n"
           r"helloGET /smuggled HTTP/1.1\r\nHost: mesh\r\n\r\n")
    # CRs shown as '~': kubectl's output is read in text mode, which would fold CRLF to LF
    out = cluster.exec("client", "sh", "-c", f"printf '{raw}' | nc -w 3 mesh 80 | tr '\\r' '~'",
                       check=False).stdout
    assert out.startswith("HTTP/1.1 400 Bad Request~\n"), out
    assert "Connection: close" in out and "Duplicate Content-Length" in out
    assert out.count("HTTP/1.1 ") == 1  # the smuggled request got no answer of its own
    code = cluster.exec("client", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                        "-m", "5", "http://mesh/").stdout
    assert code == "200"
    time.sleep(0.5)
    rejected = [f for f in _flows(cluster) if f["service"] == "default/mesh"
                and f["time"] >= start and f["verdict"] == "REJECTED"]
    assert len(rejected) == 1 and rejected[0]["status"] == 400
    assert rejected[0]["endpoint_ip"] == "" and "Content-Length" in rejected[0]["error"]


def _flows(cluster: Cluster) -> list[dict]:
    """Every node's kube-proxy flow records, from its unix socket in the state dir."""
    out: list[dict] = []
    for node in cluster.get("nodes")["items"]:
        name = node["metadata"]["name"]
        sock = cluster.state_dir / "proxy" / f"{name}.sock"
        out += proxy_flows(NodeView(name, "", "", "", "", flows_socket=str(sock)), timeout=5)
    return out


def test_flow_records_name_backend_and_reason(cluster: Cluster) -> None:
    client_ip = cluster.get("pod", "client")["status"]["podIP"]
    start = time.time()
    names = _hostnames(cluster, "client", "http://web/", 6)
    time.sleep(0.5)
    flows = [f for f in _flows(cluster) if f["time"] >= start and f["service"] == "default/web"
             and f["client_ip"] == client_ip]
    assert len(flows) == 6
    assert [f["endpoint_pod"].split("/")[1] for f in sorted(flows, key=lambda f: f["time"])] \
        == names
    assert all(f["verdict"] == "FORWARDED" and f["reason"].startswith("rr#") for f in flows)
    assert all(f["client_pod"] == "default/client" for f in flows)
    refused = [f for f in _flows(cluster) if f["service"] == "default/empty"]
    assert refused and refused[-1]["verdict"] == "REFUSED"
    sticky = [f for f in _flows(cluster) if f["service"] == "default/sticky"]
    assert any(f["reason"] == "affinity-hit" for f in sticky)
    mesh = [f for f in _flows(cluster) if f["service"] == "default/mesh"]
    assert any(f["protocol"] == "http" and f["retries"] >= 1 and f["status"] == 200
               for f in mesh)

