"""The upstream Service e2e tests (kubernetes test/e2e/network/service.go) by name, on a real
2-node cluster (`knet up --proxy-algorithm least-connections`), driven with kubectl, with
real curl and nc from pods pinned to a node, and `knet flows` to see what each node's proxy
decided: refusal without endpoints (TCP RST, ICMP port unreachable), the labels kube-proxy
obeys, internalTrafficPolicy Local, the terminating-endpoint fallback, publishNotReadyAddresses,
session affinity switched both ways, up and down (and re-created) Services, multiport,
hairpin, UDP across a server pod's restart, PreferClose and the balancing algorithms.

The `Cluster` helper is tests/integration/knet/cluster/conftest.py's, loaded from that file."""

from __future__ import annotations

import collections
import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clusterkit import PROXY_MODES, in_mode


def pinned(name: str, node: str, *, labels: str = "{}", image: str = "busybox",
           args: str = '[sleep, "3600"]', extra: str = "") -> str:
    kind = "command" if image == "busybox" else "args"
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {labels}}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {node}}}{extra}
  containers:
  - {{name: c, image: {image}, {kind}: {args}}}
"""


def netexec(name: str, node: str, app: str, *more: str, extra: str = "") -> str:
    args = json.dumps(["netexec", "--http-port=80", "--udp-port=8081", *more])
    return pinned(name, node, labels=f"{{app: {app}}}", extra=extra,
                  image="registry.k8s.io/e2e-test-images/agnhost:2.39", args=args)


def service(name: str, app: str, *, ports: str = "[{port: 80, targetPort: 80}]",
            labels: str = "{}", annotations: str = "{}", **spec: str) -> str:
    more = "".join(f"\n  {k}: {v}" for k, v in spec.items())
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: {name}, labels: {labels}, annotations: {annotations}}}
spec:
  selector: {{app: {app}}}
  ports: {ports}{more}
"""


SETUP = "---".join([
    pinned("client-1", "node-1"), pinned("client-2", "node-2"),
    netexec("web-1", "node-1", "web"), netexec("web-2", "node-2", "web"),
    service("web", "web"),
])


@pytest.fixture(scope="module", params=PROXY_MODES)
def cluster(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One cluster per kube-proxy mode: every test runs against both (a test of the
    userspace proxy's own features skips the nftables one)."""
    algorithm = ["--proxy-algorithm", "least-connections"] if request.param == "userspace" \
        else []
    with in_mode(tmp_path_factory.mktemp(f"upstream-{request.param}"), request.param,
                 *algorithm) as c:
        c.kubectl("apply", "-f", "-", input=SETUP)
        c.ready_pods("app=web", 2)
        c.wait("clients running", lambda: all(
            c.get("pod", p)["status"].get("phase") == "Running" for p in ("client-1", "client-2")))
        yield c


def apply(c: Any, manifest: str) -> None:
    c.kubectl("apply", "-f", "-", input=manifest)


def curl(c: Any, pod: str, url: str, *, timeout: int = 3) -> tuple[int, str]:
    r = c.exec(pod, "curl", "-s", "-m", str(timeout), url, check=False)
    return r.returncode, r.stdout


def hostnames(c: Any, pod: str, url: str, n: int) -> list[str]:
    script = f"for i in $(seq {n}); do curl -s -m 3 {url}; echo; done"
    return c.exec(pod, "sh", "-c", script).stdout.split()


def served_by(c: Any, pod: str, svc: str, want: set[str], *, n: int = 6,
              timeout: float = 20) -> list[str]:
    """Wait until `n` requests from `pod` to http://svc/hostname all answer from `want`."""
    def cond() -> list[str] | None:
        got = hostnames(c, pod, f"http://{svc}/hostname", n)
        return got if len(got) == n and set(got) <= want else None
    return c.wait(f"{svc} served by {sorted(want)} from {pod}", cond, timeout)


def flows(c: Any, *args: str) -> list[dict[str, Any]]:
    out = c.knet("flows", *args, "-o", "json", "--state-dir", str(c.state_dir)).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()] if not \
        out.lstrip().startswith("[") else json.loads(out)


def test_should_be_rejected_when_no_endpoints_exist(cluster: Any) -> None:
    apply(cluster, service("no-pods", "nothing-matches",
                           ports="[{name: tcp, port: 80}, {name: udp, port: 53, protocol: UDP}]"))
    ip = cluster.get("svc", "no-pods")["spec"]["clusterIP"]
    time.sleep(0.5)
    t0 = time.monotonic()
    code, _ = curl(cluster, "client-1", f"http://{ip}:80/")
    assert code == 7 and time.monotonic() - t0 < 2  # "Connection refused", not 56 (reset)
    r = cluster.exec("client-1", "nc", "-v", "-z", "-w", "2", ip, "80", check=False)
    assert r.returncode != 0 and "refused" in (r.stdout + r.stderr).lower(), r
    # UDP: ICMP port unreachable, seen by the client's next read as ECONNREFUSED
    r = cluster.exec("client-1", "python3", "-c", (
        "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(2);"
        f"s.connect(('{ip}',53));s.send(b'x')\n"
        "try:\n s.recv(9)\nexcept ConnectionRefusedError:\n print('ECONNREFUSED')"),
        check=False)
    assert r.stdout.strip() == "ECONNREFUSED", r
    time.sleep(0.5)
    got = flows(cluster, "--service", "no-pods")
    assert {(f["protocol"], f["verdict"]) for f in got} >= {("tcp", "REFUSED"),
                                                            ("udp", "REFUSED")}
    text = cluster.knet("flows", "--service", "no-pods", "--state-dir",
                        str(cluster.state_dir)).stdout
    how = "reject" if cluster.mode == "userspace" else "nftables reject-chain"
    assert f"REFUSED tcp {how}" in text and "(no endpoints)" in text


def userspace_only(c: Any, why: str) -> None:
    if c.mode != "userspace":
        pytest.skip(f"the userspace proxy's own: {why}")


def test_should_be_rejected_when_no_endpoints_exist_flood_leaks_no_fd(cluster: Any) -> None:
    # nftables: no proxy fd is involved, and the kernel rate-limits the ICMP errors its
    # reject rule sends (icmp_ratelimit), as for kube-proxy's own nftables and iptables modes
    userspace_only(cluster, "its sockets under a flood")
    proxy_pid = _proxy_pid(cluster, "node-1")
    fds = len(list(Path(f"/proc/{proxy_pid}/fd").iterdir()))
    ip = cluster.get("svc", "no-pods")["spec"]["clusterIP"]
    r = cluster.exec("client-1", "sh", "-c",
                     f"n=0; for i in $(seq 300); do curl -s -m 2 http://{ip}/ ; "
                     "[ $? = 7 ] && n=$((n+1)); done; echo $n")
    assert r.stdout.split()[-1] == "300"
    assert len(list(Path(f"/proc/{proxy_pid}/fd").iterdir())) <= fds + 2


def _proxy_pid(c: Any, node: str) -> int:
    rec = json.loads((c.state_dir / "cluster.json").read_text())
    return int(rec["procs"][f"kube-proxy-{node}"]["pid"])


def test_should_implement_service_kubernetes_io_service_proxy_name(cluster: Any) -> None:
    apply(cluster, service("svc-proxy-name", "web",
                           labels="{service.kubernetes.io/service-proxy-name: foo-bar}")
          + "---" + service("svc-not-tied", "web"))
    served_by(cluster, "client-1", "svc-not-tied", {"web-1", "web-2"})
    ip = cluster.get("svc", "svc-proxy-name")["spec"]["clusterIP"]
    code, _ = curl(cluster, "client-1", f"http://{ip}/hostname", timeout=2)
    assert code != 0  # kube-proxy leaves it alone: nothing serves the address
    cluster.kubectl("label", "svc", "svc-proxy-name", "service.kubernetes.io/service-proxy-name-")
    served_by(cluster, "client-1", ip, {"web-1", "web-2"})


def test_should_implement_service_kubernetes_io_headless(cluster: Any) -> None:
    apply(cluster, service("svc-headless", "web", labels="{service.kubernetes.io/headless: ''}")
          + "---" + service("svc-not-headless", "web"))
    served_by(cluster, "client-1", "svc-not-headless", {"web-1", "web-2"})
    ip = cluster.get("svc", "svc-headless")["spec"]["clusterIP"]
    code, _ = curl(cluster, "client-1", f"http://{ip}/hostname", timeout=2)
    assert code != 0
    cluster.kubectl("label", "svc", "svc-headless", "service.kubernetes.io/headless-")
    served_by(cluster, "client-1", ip, {"web-1", "web-2"})


def test_should_respect_internalTrafficPolicy_Local_Pod_to_Pod(cluster: Any) -> None:
    apply(cluster, netexec("itp-1", "node-1", "itp") + "---"
          + service("itp-local", "itp", internalTrafficPolicy="Local"))
    cluster.ready_pods("app=itp", 1)
    served_by(cluster, "client-1", "itp-local", {"itp-1"})
    # node-2 has no local endpoint: kube-proxy DROPs (endpoints exist elsewhere)
    code, _ = curl(cluster, "client-2", "http://itp-local/hostname", timeout=2)
    assert code == 28  # a timeout, the SYN dropped
    time.sleep(0.5)
    dropped = [f for f in flows(cluster, "--service", "itp-local") if f["node"] == "node-2"]
    assert dropped and dropped[-1]["verdict"] == "DROPPED"
    assert "no local endpoints on node-2" in dropped[-1]["error"]


def test_should_fallback_to_terminating_endpoints_when_there_are_no_ready_endpoints_with_internalTrafficPolicy_Cluster(cluster: Any) -> None:
    apply(cluster, netexec("term-1", "node-2", "term", "--delay-shutdown=60",
                           extra="\n  terminationGracePeriodSeconds: 90")
          + "---" + service("term", "term"))
    cluster.ready_pods("app=term", 1)
    served_by(cluster, "client-1", "term", {"term-1"})
    cluster.kubectl("delete", "pod", "term-1", "--wait=false")

    def terminating() -> bool:
        eps = [e for s in cluster.get("endpointslices", "-l", "kubernetes.io/service-name=term")
               ["items"] for e in s.get("endpoints") or []]
        return bool(eps) and all(e["conditions"] == {"ready": False, "serving": True,
                                                     "terminating": True} for e in eps)
    cluster.wait("term-1's endpoint serving and terminating", terminating)
    served_by(cluster, "client-1", "term", {"term-1"})  # the only endpoint, terminating
    cluster.kubectl("delete", "pod", "term-1", "--grace-period=0", "--force", check=False)


def test_should_create_endpoints_for_unready_pods(cluster: Any) -> None:
    apply(cluster, pinned("unready-1", "node-1", labels="{app: unready}",
                          image="registry.k8s.io/e2e-test-images/agnhost:2.39",
                          args='["netexec", "--http-port=80"]',
                          extra="") .replace(
        "  - {name: c,", "  - {readinessProbe: {tcpSocket: {port: 9999}, periodSeconds: 1}, "
        "name: c,")
          + "---" + service("tolerate-unready", "unready", publishNotReadyAddresses="true")
          + "---" + service("unready", "unready"))
    cluster.wait("unready-1 running", lambda: cluster.get("pod", "unready-1")["status"]
                 .get("phase") == "Running")
    served_by(cluster, "client-1", "tolerate-unready", {"unready-1"})
    code, _ = curl(cluster, "client-1", "http://unready/hostname", timeout=2)
    assert code == 7  # the same pod without publishNotReadyAddresses: no endpoints, refused


def test_should_be_able_to_switch_session_affinity_for_service_with_type_clusterIP(
        cluster: Any) -> None:
    apply(cluster, service("affinity", "web"))
    served_by(cluster, "client-1", "affinity", {"web-1", "web-2"})
    assert len(set(hostnames(cluster, "client-1", "http://affinity/hostname", 8))) == 2
    cluster.kubectl("patch", "svc", "affinity", "-p", '{"spec":{"sessionAffinity":"ClientIP"}}')
    cluster.wait("affinity on", lambda: len(set(
        hostnames(cluster, "client-1", "http://affinity/hostname", 8))) == 1)
    cluster.kubectl("patch", "svc", "affinity", "-p", '{"spec":{"sessionAffinity":"None"}}')
    cluster.wait("affinity off", lambda: len(set(
        hostnames(cluster, "client-1", "http://affinity/hostname", 8))) == 2)


def test_should_be_able_to_up_and_down_services(cluster: Any) -> None:
    apply(cluster, service("up-down-1", "web") + "---" + service("up-down-2", "web"))
    served_by(cluster, "client-1", "up-down-1", {"web-1", "web-2"})
    served_by(cluster, "client-1", "up-down-2", {"web-1", "web-2"})
    ip1 = cluster.get("svc", "up-down-1")["spec"]["clusterIP"]
    cluster.kubectl("delete", "svc", "up-down-1")
    cluster.wait("up-down-1 down", lambda: curl(cluster, "client-1", f"http://{ip1}/",
                                                timeout=2)[0] != 0)
    served_by(cluster, "client-1", "up-down-2", {"web-1", "web-2"})
    apply(cluster, service("up-down-3", "web"))
    served_by(cluster, "client-1", "up-down-3", {"web-1", "web-2"})
    # deleted and re-created under the same name: serving again at once
    apply(cluster, service("up-down-1", "web"))
    t0 = time.monotonic()
    served_by(cluster, "client-2", "up-down-1", {"web-1", "web-2"}, timeout=10)
    assert time.monotonic() - t0 < 8
    time.sleep(3)  # and it stays served (the old Service's slices are gone, not the new ones)
    served_by(cluster, "client-2", "up-down-1", {"web-1", "web-2"}, timeout=3)


def test_should_serve_multiport_endpoints_from_pods(cluster: Any) -> None:
    apply(cluster, netexec("multi-1", "node-1", "multi", "--http-port=100")
          .replace('"--http-port=80", ', "")
          + "---" + netexec("multi-2", "node-2", "multi", "--http-port=101")
          .replace('"--http-port=80", ', "")
          + "---" + service("multi-endpoint-test", "multi",
                            ports="[{name: portname1, port: 80, targetPort: 100}, "
                                  "{name: portname2, port: 81, targetPort: 101}]"))
    cluster.ready_pods("app=multi", 2)
    cluster.wait("port 80 -> multi-1", lambda: hostnames(
        cluster, "client-1", "http://multi-endpoint-test:80/hostname", 3) == ["multi-1"] * 3)
    cluster.wait("port 81 -> multi-2", lambda: hostnames(
        cluster, "client-1", "http://multi-endpoint-test:81/hostname", 3) == ["multi-2"] * 3)


def test_should_allow_pods_to_hairpin_back_to_themselves_through_services(cluster: Any) -> None:
    apply(cluster, service("hairpin-test", "hairpin") + "---"
          + netexec("hairpin", "node-1", "hairpin"))
    cluster.ready_pods("app=hairpin", 1)
    ip = cluster.get("svc", "hairpin-test")["spec"]["clusterIP"]
    out = cluster.wait("hairpin answers", lambda: cluster.exec(
        "hairpin", "sh", "-c", f"wget -q -T 3 -O - http://{ip}/hostname", check=False).stdout)
    assert out.strip() == "hairpin"


def test_should_preserve_UDP_traffic_when_server_pod_cycles_for_a_ClusterIP_service(
        cluster: Any) -> None:
    apply(cluster, netexec("udp-server-1", "node-2", "udp") + "---"
          + service("udp-svc", "udp", ports="[{port: 80, targetPort: 8081, protocol: UDP}]"))
    cluster.ready_pods("app=udp", 1)
    # one client socket (one source port, as upstream's `nc -u -p 12345` loop) the whole time
    loop = ("import socket,time,sys\n"
            "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(('',12345));"
            "s.settimeout(0.5)\n"
            "end=time.time()+float(sys.argv[1]);seen=[]\n"
            "while time.time()<end:\n"
            " s.sendto(b'hostname',('udp-svc',80))\n"
            " try:\n  d=s.recv(99).decode()\n"
            "  if not seen or seen[-1]!=d: seen.append(d)\n"
            " except OSError: pass\n"
            " time.sleep(0.5)\n"
            "print(' '.join(seen))")
    proc = subprocess.Popen(["kubectl", "--kubeconfig", str(cluster.kubeconfig), "exec",
                             "client-1", "--", "python3", "-c", loop, "40"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(5)
        cluster.kubectl("delete", "pod", "udp-server-1", "--grace-period=0", "--force")
        apply(cluster, netexec("udp-server-2", "node-1", "udp"))
        cluster.ready_pods("app=udp", 1)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert out.split()[:1] == ["udp-server-1"] and out.split()[-1] == "udp-server-2", (out, err)


def test_trafficDistribution_PreferClose_keeps_traffic_on_the_node(cluster: Any) -> None:
    apply(cluster, service("close", "web", trafficDistribution="PreferClose"))
    served_by(cluster, "client-1", "close", {"web-1"}, n=8)
    served_by(cluster, "client-2", "close", {"web-2"}, n=8)


def test_balancing_algorithms_per_cluster_and_per_service(cluster: Any) -> None:
    userspace_only(cluster, "balancing algorithms (nftables picks by numgen random)")
    apply(cluster, service("algo-sh", "web", annotations="{knet.dev/proxy-algorithm: source-hash}")
          + "---" + service("algo-random", "web",
                            annotations="{knet.dev/proxy-algorithm: random}"))
    served_by(cluster, "client-1", "algo-sh", {"web-1", "web-2"})
    assert len(set(hostnames(cluster, "client-1", "http://algo-sh/hostname", 10))) == 1
    assert len(set(hostnames(cluster, "client-1", "http://web/hostname", 10))) == 2
    hostnames(cluster, "client-1", "http://algo-random/hostname", 10)
    time.sleep(0.5)
    by_svc = collections.defaultdict(set)
    for f in flows(cluster):
        if f["verdict"] == "FORWARDED":
            by_svc[f["service"]].add(f["algorithm"])
    assert by_svc["default/algo-sh"] == {"source-hash"}
    assert by_svc["default/algo-random"] == {"random"}
    assert by_svc["default/web"] == {"least-connections"}  # knet up --proxy-algorithm
    text = cluster.knet("flows", "--service", "algo-sh", "--last", "1", "--state-dir",
                        str(cluster.state_dir)).stdout
    assert "FORWARDED tcp source-hash sh bucket" in text


def _node_ips(c: Any) -> dict[str, str]:
    return {n["metadata"]["name"]: next(a["address"] for a in n["status"]["addresses"]
                                        if a["type"] == "InternalIP")
            for n in c.get("nodes")["items"]}


def _from_host(url: str, n: int) -> list[str]:
    """n answers to GET url from the host side (the underlay); [] if one fails."""
    try:
        return [urllib.request.urlopen(url, timeout=3).read().decode().strip()
                for _ in range(n)]
    except OSError:
        return []


def test_should_be_able_to_switch_session_affinity_for_NodePort_service(cluster: Any) -> None:
    apply(cluster, service("affinity-np", "web", type="NodePort",
                           ports="[{port: 80, targetPort: 80, nodePort: 30111}]"))
    url = f"http://{_node_ips(cluster)['node-1']}:30111/hostname"
    cluster.wait("NodePort served by both", lambda: set(_from_host(url, 8)) == {"web-1", "web-2"})
    cluster.kubectl("patch", "svc", "affinity-np", "-p", '{"spec":{"sessionAffinity":"ClientIP"}}')
    cluster.wait("affinity on", lambda: len(set(_from_host(url, 8))) == 1)
    cluster.kubectl("patch", "svc", "affinity-np", "-p", '{"spec":{"sessionAffinity":"None"}}')
    cluster.wait("affinity off", lambda: len(set(_from_host(url, 8))) == 2)


def test_internalTrafficPolicy_Local_leaves_NodePort_traffic_alone(cluster: Any) -> None:
    # internalTrafficPolicy governs ClusterIP traffic only: node-2's NodePort still reaches
    # the one endpoint on node-1 (externalTrafficPolicy Cluster)
    apply(cluster, service("itp-np", "itp", type="NodePort", internalTrafficPolicy="Local",
                           ports="[{port: 80, targetPort: 80, nodePort: 30112}]"))
    url = f"http://{_node_ips(cluster)['node-2']}:30112/hostname"
    assert cluster.wait("NodePort on node-2", lambda: _from_host(url, 3)) == ["itp-1"] * 3
    code, _ = curl(cluster, "client-2", "http://itp-np/hostname", timeout=2)
    assert code == 28
