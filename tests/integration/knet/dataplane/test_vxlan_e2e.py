"""`knet up --backend vxlan` end to end: Flannel's flannel.1 in every node netns, pods on
different nodes talk through it with MTU 1450, a real capture on the underlay decodes as VXLAN
VNI 1 with the pod addresses inside, `knet node add/remove` keep every node's FDB, neighbours
and routes right, and a malformed peer annotation is an Event on that node, its
NetworkUnavailable condition (with the network-unavailable taint) while the rest of the overlay
keeps working."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from clusterkit import Cluster, cluster_up
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.vxlan import VXLAN
from scapy.utils import rdpcap

PUBLIC_IP = "flannel.alpha.coreos.com/public-ip"


def pinned(name: str, node: str, image: str = "knet/whoami") -> str:
    cmd = '' if image == "knet/whoami" else ', command: ["sleep", "3600"]'
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
  nodeName: {node}
  containers:
  - {{name: c, image: {image}{cmd}}}
"""


def netns(node: str, *cmd: str) -> str:
    return subprocess.run(["ip", "netns", "exec", f"knet-{node}", *cmd], capture_output=True,
                          text=True, check=True).stdout


@pytest.fixture(scope="module")
def vx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with cluster_up(tmp_path_factory.mktemp("vxlan"), "--backend", "vxlan") as c:
        c.kubectl("apply", "-f", "-", input=pinned("client", "node-1", "busybox")
                  + "---" + pinned("web2", "node-2"))
        c.ready_pods("app in (client,web2)", 2, timeout=60)
        yield c


def pod_ip(c: Cluster, name: str) -> str:
    return str(c.get("pod", name)["status"]["podIP"])


def fetch(c: Cluster, ip: str, *, check: bool = True) -> str:
    return c.exec("client", "curl", "-s", "-m", "3", f"http://{ip}/", check=check).stdout


def test_flannel_device_annotations_and_pod_mtu(vx: Cluster) -> None:
    link = netns("node-1", "ip", "-d", "link", "show", "flannel.1")
    assert "mtu 1450" in link and "vxlan id 1 " in link and "dstport 8472" in link
    assert "local 172.18.0.2" in link and "nolearning" in link
    ann = vx.get("node", "node-2")["metadata"]["annotations"]
    assert json.loads(ann["flannel.alpha.coreos.com/backend-data"]) == {
        "VNI": 1, "VtepMAC": "0a:5a:ac:12:00:03"}
    assert ann["flannel.alpha.coreos.com/backend-type"] == "vxlan"
    assert ann[PUBLIC_IP] == "172.18.0.3"
    assert "10.244.2.0/24 via 10.244.2.0 dev flannel.1" in netns("node-1", "ip", "route")
    assert "0a:5a:ac:12:00:03 dst 172.18.0.3" in netns("node-1", "bridge", "fdb", "show",
                                                       "dev", "flannel.1")
    assert vx.exec("client", "cat", "/sys/class/net/eth0/mtu").stdout.strip() == "1450"


def test_cross_node_traffic_goes_through_the_tunnel(vx: Cluster) -> None:
    out = fetch(vx, pod_ip(vx, "web2"))
    assert "Hostname: web2" in out
    # a request and an answer larger than one packet cross intact (whoami echoes headers;
    # MTU 1450 inside the tunnel, 1500 outside)
    big = vx.exec("client", "sh", "-c", "curl -s -m 5 -H \"X-Big: $(head -c 4000 /dev/zero "
                  f"| tr '\\0' a)\" http://{pod_ip(vx, 'web2')}/").stdout
    assert "X-Big: " + "a" * 4000 in big


def test_underlay_capture_decodes_as_vxlan_with_the_pod_ips_inside(vx: Cluster,
                                                                    tmp_path: Path) -> None:
    client, web = pod_ip(vx, "client"), pod_ip(vx, "web2")
    pcap = tmp_path / "underlay.pcap"
    cap = subprocess.Popen(
        ["python3", "-m", "knet.cli.main", "capture", "node-1", "-i", "eth0", "-c", "6",
         "--duration", "20", "-w", str(pcap), "--print", "--state-dir", str(vx.state_dir),
         "udp", "port", "8472"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = threading.Event()

    def traffic() -> None:
        while cap.poll() is None and not started.is_set():
            time.sleep(0.3)
            fetch(vx, web, check=False)
    time.sleep(2.5)                        # the capture imports and opens its socket
    t = threading.Thread(target=traffic)
    t.start()
    out, err = cap.communicate(timeout=40)
    started.set()
    t.join()
    assert cap.returncode == 0, err
    lines = [ln for ln in out.splitlines() if "VXLAN vni 1" in ln]
    assert any("172.18.0.2:" in ln and "-> 172.18.0.3:8472 VXLAN vni 1 | " in ln
               and f"{client}:" in ln and f"{web}:80 (default/web2)" in ln for ln in lines), out
    pkts = rdpcap(str(pcap))
    inner = [(p[VXLAN].vni, p[VXLAN].payload[IP].src, p[VXLAN].payload[IP].dst)
             for p in pkts if VXLAN in p and p[UDP].dport == 8472]
    assert inner and all(vni == 1 for vni, _s, _d in inner)
    assert {(client, web), (web, client)} & {(s, d) for _v, s, d in inner}
    outer = {(p[IP].src, p[IP].dst) for p in pkts}
    assert outer <= {("172.18.0.2", "172.18.0.3"), ("172.18.0.3", "172.18.0.2")}
    assert any(TCP in p[VXLAN].payload for p in pkts if VXLAN in p)


def test_node_add_remove_and_a_malformed_peer(vx: Cluster) -> None:
    vx.knet("node", "add", "--state-dir", str(vx.state_dir))
    try:
        vx.kubectl("apply", "-f", "-", input=pinned("web3", "node-3"))
        vx.ready_pods("app=web3", 1, timeout=60)
        assert "Hostname: web3" in fetch(vx, pod_ip(vx, "web3"))
        assert "0a:5a:ac:12:00:04 dst 172.18.0.4" in netns("node-2", "bridge", "fdb", "show",
                                                           "dev", "flannel.1")
        # node-3's annotation goes bad: an Event on node-3, node-3 skipped, node-2 still fine
        vx.kubectl("annotate", "node", "node-3", f"{PUBLIC_IP}=not-an-ip", "--overwrite")

        def warned() -> bool:
            evs = vx.get("events", "-n", "default",
                         "--field-selector", "involvedObject.name=node-3")["items"]
            return any(e["reason"] == "OverlayPeerInvalid" and "node node-3" in e["message"]
                       and "not-an-ip" in e["message"] for e in evs)
        vx.wait("an OverlayPeerInvalid event on node-3", warned, timeout=30)
        vx.wait("node-1 drops its route to node-3",
                lambda: "10.244.3.0/24" not in netns("node-1", "ip", "route"), timeout=15)
        assert "Hostname: web2" in fetch(vx, pod_ip(vx, "web2"))

        def network(status: str) -> bool:          # node-3's own agent: NetworkUnavailable
            n = vx.get("node", "node-3")
            cond = [c for c in n["status"]["conditions"] if c["type"] == "NetworkUnavailable"]
            taints = {t["key"] for t in n["spec"].get("taints") or []}
            return bool(cond) and cond[0]["status"] == status and (
                ("node.kubernetes.io/network-unavailable" in taints) == (status == "True"))
        vx.wait("node-3 NetworkUnavailable=True and tainted", lambda: network("True"),
                timeout=30)
        vx.kubectl("annotate", "node", "node-3", f"{PUBLIC_IP}=172.18.0.4", "--overwrite")
        vx.wait("node-3 NetworkUnavailable=False, untainted", lambda: network("False"),
                timeout=30)
        vx.wait("node-3 reachable again",
                lambda: "Hostname: web3" in fetch(vx, pod_ip(vx, "web3"), check=False),
                timeout=20)
    finally:
        vx.knet("node", "remove", "node-3", "--state-dir", str(vx.state_dir))
    for node in ("node-1", "node-2"):
        vx.wait(f"{node} forgets node-3", lambda n=node: (  # type: ignore[misc]
            "10.244.3.0/24" not in netns(n, "ip", "route")
            and "172.18.0.4" not in netns(n, "bridge", "fdb", "show", "dev", "flannel.1")
            and "10.244.3.0" not in netns(n, "ip", "neigh", "show", "dev", "flannel.1")),
            timeout=20)
    assert "Hostname: web2" in fetch(vx, pod_ip(vx, "web2"))
