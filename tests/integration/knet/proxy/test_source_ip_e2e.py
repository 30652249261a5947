"""The client's source IP through the userspace kube-proxy, end to end on a real 2-node
cluster, after the upstream e2e test "should preserve source pod IP for traffic thru service
cluster IP" (test/e2e/network/service.go: agnhost netexec's /clientip through a ClusterIP,
curl from pods, the answer's host must be the client pod's IP). Here from a pod on the
backend's node and from one on the other node, over TCP, UDP and the L7 (appProtocol http)
path; a pod reaching itself through its Service (hairpin) still works, masqueraded to the
node as kube-proxy does; a NodePort reached from the host with externalTrafficPolicy Cluster
shows the node's address, with Local the host's own; flow records say which source the
backend saw. Every test runs against both kube-proxy modes (userspace, nftables) but those about
the userspace proxy's own machinery."""

from __future__ import annotations

import dataclasses
import time
import urllib.request
from typing import Any

import pytest
from clusterkit import PROXY_MODES, Cluster, in_mode

from knet.flows.cluster import NodeView, proxy_flows


@pytest.fixture(scope="module", params=PROXY_MODES)
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """knet up --nodes 2 ... knet down, once per kube-proxy mode."""
    with in_mode(tmp_path_factory.mktemp(f"srcip-{request.param}"), request.param) as c:
        yield c


def userspace_only(c: Cluster) -> None:
    if c.mode != "userspace":
        pytest.skip("about the userspace proxy's own source-IP machinery (IP_TRANSPARENT)")

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.39"
HOST_IP = "172.18.0.1"


def _pod(name: str, node: str, labels: str, image: str, args: str) -> str:
    return f"""---
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{{labels}}}}}
spec:
  nodeName: {node}
  containers:
  - name: c
    image: {image}
    {args}
"""


def _service(name: str, app: str, extra: str = "") -> str:
    return f"""---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: {app}}}
{extra}  ports:
  - {{name: http, port: 80, targetPort: 8080}}
  - {{name: udp, port: 53530, targetPort: 8081, protocol: UDP}}
  - {{name: l7, port: 8000, targetPort: 8080, appProtocol: http}}
"""


NETEXEC = 'args: ["netexec", "--http-port=8080", "--udp-port=8081"]'
SLEEP = 'command: ["sleep", "3600"]'
APP = (_pod("echo-1", "node-1", "app: echo-1", AGNHOST, NETEXEC)
       + _pod("echo-2", "node-2", "app: echo-2", AGNHOST, NETEXEC)
       + _pod("pause-1", "node-1", "role: client", "busybox", SLEEP)
       + _pod("pause-2", "node-2", "role: client", "busybox", SLEEP)
       + _service("sourceip-1", "echo-1") + _service("sourceip-2", "echo-2")
       + _service("sourceip-np", "echo-1", "  type: NodePort\n")
       + _service("sourceip-local", "echo-1",
                  "  type: NodePort\n  externalTrafficPolicy: Local\n"))


def _ip(c: Cluster, pod: str) -> str:
    return str(c.get("pod", pod)["status"]["podIP"])


def _host(answer: str) -> str:
    """netexec answers /clientip with "IP:PORT"."""
    return answer.strip().rsplit(":", 1)[0]


def _curl(c: Cluster, pod: str, url: str) -> str:
    return c.exec(pod, "curl", "-q", "-s", "--connect-timeout", "30", url).stdout


def _udp(c: Cluster, pod: str, svc: str) -> str:
    return c.exec(pod, "sh", "-c", f"echo clientip | nc -u -w 2 {svc} 53530").stdout


@pytest.fixture(scope="module")
def app(cluster: Cluster) -> Cluster:
    cluster.kubectl("apply", "-f", "-", input=APP)
    cluster.ready_pods("app in (echo-1, echo-2)", 2, timeout=90)
    cluster.ready_pods("role=client", 2, timeout=90)
    for svc in ("sourceip-1", "sourceip-2"):   # the proxies have the Services
        cluster.wait(f"{svc} answers", lambda s=svc: _curl(cluster, "pause-1",
                                                            f"http://{s}/clientip"), timeout=30)
    return cluster


@pytest.mark.parametrize("client", ["pause-1", "pause-2"])
@pytest.mark.parametrize("svc", ["sourceip-1", "sourceip-2"])
def test_should_preserve_source_pod_ip_for_traffic_thru_service_cluster_ip(
        app: Cluster, client: str, svc: str) -> None:
    """Each client pod against a backend on its own node and on the other one."""
    cluster_ip = app.get("service", svc)["spec"]["clusterIP"]
    for url in (f"http://{svc}/clientip", f"http://{cluster_ip}:80/clientip"):
        assert _host(_curl(app, client, url)) == _ip(app, client), url


@pytest.mark.parametrize("client", ["pause-1", "pause-2"])
@pytest.mark.parametrize("svc", ["sourceip-1", "sourceip-2"])
def test_udp_keeps_the_source_pod_ip(app: Cluster, client: str, svc: str) -> None:
    assert _host(_udp(app, client, svc)) == _ip(app, client)


@pytest.mark.parametrize("client", ["pause-1", "pause-2"])
def test_l7_path_keeps_the_source_pod_ip(app: Cluster, client: str) -> None:
    for svc in ("sourceip-1", "sourceip-2"):
        assert _host(_curl(app, client, f"http://{svc}:8000/clientip")) == _ip(app, client)


def test_an_endpoint_outside_the_pod_network_answers_too(app: Cluster) -> None:
    """The `kubernetes` Service's endpoint is the API server on the host: its replies to the
    kept client address come back over the host's route to the client's node."""
    for client in ("pause-1", "pause-2"):
        code = app.exec(client, "curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}",
                        "--connect-timeout", "10", "https://kubernetes.default/version").stdout
        assert code.isdigit() and code != "000", (client, code)


def test_hairpin_still_works_masqueraded_to_the_node(app: Cluster) -> None:
    """echo-1 reaches itself through its own Service over TCP, UDP and L7: the backend would
    answer itself directly, so kube-proxy masquerades it — it sees its node's address."""
    own = _ip(app, "echo-1")
    gateway = own.rsplit(".", 1)[0] + ".1"
    assert _host(_curl(app, "echo-1", "http://sourceip-1/clientip")) == gateway
    assert _host(_curl(app, "echo-1", "http://sourceip-1:8000/clientip")) == gateway
    assert _host(_udp(app, "echo-1", "sourceip-1")) == gateway


def test_nodeport_from_the_host_with_cluster_policy_sees_a_node_address(app: Cluster) -> None:
    port = app.get("service", "sourceip-np")["spec"]["ports"][0]["nodePort"]
    nodes = {n["metadata"]["name"]: next(a["address"] for a in n["status"]["addresses"]
                                         if a["type"] == "InternalIP")
             for n in app.get("nodes")["items"]}
    gateway = _ip(app, "echo-1").rsplit(".", 1)[0] + ".1"   # echo-1's node, on the pod side
    for name, ip in nodes.items():
        seen = _host(urllib.request.urlopen(f"http://{ip}:{port}/clientip",
                                            timeout=10).read().decode())
        # the node that took the connection: its cni0 address (same node) or its underlay
        assert seen != HOST_IP and seen in {gateway, ip}, (name, seen)


def test_nodeport_with_local_policy_keeps_the_outside_client_address(app: Cluster) -> None:
    """externalTrafficPolicy Local: the node that has the endpoint (echo-1's) passes the
    client's own address through, as kube-proxy does (no masquerade)."""
    port = app.get("service", "sourceip-local")["spec"]["ports"][0]["nodePort"]
    node = app.get("pod", "echo-1")["status"]["hostIP"]
    seen = urllib.request.urlopen(f"http://{node}:{port}/clientip", timeout=10).read().decode()
    assert _host(seen) == HOST_IP


def _flows(c: Cluster) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name in ("node-1", "node-2"):
        sock = c.state_dir / "proxy" / f"{name}.sock"
        out += proxy_flows(NodeView(name, "", "", "", "", flows_socket=str(sock)), timeout=5)
    return out


def test_flow_records_say_the_source_the_backend_saw(app: Cluster) -> None:
    userspace_only(app)
    start = time.time()
    client = _ip(app, "pause-1")
    answer = _curl(app, "pause-1", "http://sourceip-2/clientip")
    _curl(app, "echo-1", "http://sourceip-1/clientip")   # hairpin
    time.sleep(0.5)
    flows = [f for f in _flows(app) if f["time"] >= start - 1 and f["protocol"] == "tcp"]
    kept = [f for f in flows if f["service"] == "default/sourceip-2"
            and f["client_ip"] == client]
    assert kept and kept[-1]["source_ip"] == client
    assert f"{kept[-1]['source_ip']}:{kept[-1]['source_port']}" == answer.strip()
    hairpin = [f for f in flows if f["service"] == "default/sourceip-1"
               and f["client_ip"] == _ip(app, "echo-1")]
    assert hairpin and hairpin[-1]["source_ip"] != hairpin[-1]["client_ip"]


def _node_tables(node: str) -> str:
    import subprocess
    return subprocess.run(["ip", "netns", "exec", f"knet-{node}", "nft", "list", "tables"],
                          capture_output=True, text=True, check=True).stdout


def test_turned_off_backends_see_the_node_and_the_reply_path_is_gone(app: Cluster) -> None:
    """What `knet up --no-preserve-source-ip` records, applied to node-1's kube-proxy: it is
    restarted by `knet up` from the record, removes its node's reply path and masquerades."""
    userspace_only(app)
    from knet.cluster import procs
    from knet.cluster.state import ClusterRecord, proxy_role

    assert "knet_transparent" in _node_tables("node-1")
    rec = ClusterRecord.load(app.state_dir)
    assert rec is not None
    rec.options = dataclasses.replace(rec.options, preserve_source_ip=False)
    rec.save()
    assert procs.stop(rec.procs[proxy_role("node-1")])   # the proxy this test's cluster started
    app.knet("up", "--state-dir", str(app.state_dir), "--timeout", "60")
    gateway = _ip(app, "echo-1").rsplit(".", 1)[0] + ".1"
    app.wait("node-1's proxy masquerades", lambda: _host(_curl(
        app, "pause-1", "http://sourceip-1/clientip")) == gateway, timeout=30)
    assert _host(_udp(app, "pause-1", "sourceip-1")) == gateway
    assert _host(_curl(app, "pause-1", "http://sourceip-2/clientip")) == "172.18.0.2"
    assert "knet_transparent" not in _node_tables("node-1")
    assert "knet_transparent" in _node_tables("node-2")    # node-2's proxy still keeps them
    assert _host(_curl(app, "pause-2", "http://sourceip-1/clientip")) == _ip(app, "pause-2")
