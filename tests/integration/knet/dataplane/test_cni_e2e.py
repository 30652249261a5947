"""Pod wiring behind the CNI 1.0 contract, for real: a pod wired by `python -m knet.cni` (knet's
plugin as a program) talks to one wired by the reference plugins (Debian's bridge + host-local
+ portmap + loopback), every call is in the node's cni.log with what it was given and returned,
a broken config is CNI error JSON, and `knet up --cni reference` runs a cluster whose pods the
reference plugins wire (kube-dns included) and `knet down` leaves nothing behind."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from clusterkit import Cluster, cluster_up

from knet.cni.runtime import CniDataplane
from knet.dataplane.base import NodeSpec
from knet.dataplane.netlink import NetlinkDataplane

pytestmark = pytest.mark.skipif(not Path("/usr/lib/cni/bridge").exists(),
                                reason="containernetworking-plugins not installed "
                                "(scripts/install.sh installs it)")


def knet_cni(env: dict[str, str], conf: dict | bytes) -> tuple[dict | None, int]:
    stdin = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
    r = subprocess.run([sys.executable, "-m", "knet.cni"], input=stdin, capture_output=True,
                       env={**os.environ, **env}, timeout=60, check=False)
    return (json.loads(r.stdout) if r.stdout.strip() else None), r.returncode


def in_ns(ns: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True,
                          timeout=30, check=False)


def test_builtin_plugin_pod_talks_to_reference_plugin_pod(tmp_path: Path) -> None:
    asyncio.run(_mixed(tmp_path))


async def _mixed(state: Path) -> None:
    dp = NetlinkDataplane(state / "dataplane")
    s1, s2 = NodeSpec.default(1), NodeSpec.default(2)
    ref = CniDataplane(dp, node=s2, mode="reference", state_dir=state)
    try:
        await dp.ensure_host()
        await dp.ensure_node(s1)
        await ref.ensure_node(s2)
        await dp.ensure_node_routes("node-1", [s2])
        await dp.ensure_node_routes("node-2", [s1])
        # node-1: knet's plugin run as a program, as any CNI runtime would
        netns = "/run/netns/knet-p-46ecb04a23c7"
        env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "knet-p-46ecb04a23c7",
               "CNI_NETNS": netns, "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni",
               "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=a"}
        conf = {"cniVersion": "1.0.0", "name": "knet", "type": "knet", "node": "node-1",
                "dataplaneDir": str(state / "dataplane")}
        res, status = knet_cni(env, conf)
        assert status == 0, res
        assert res is not None and res["ips"][0]["address"] == "10.244.1.2/24"
        assert res["interfaces"][1]["sandbox"] == netns
        # a broken config: CNI error JSON with code and msg, exit status 1, nothing made
        bad, status = knet_cni({**env, "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=x"},
                               b'{"cniVersion": "1.0.0", "name": "knet", "type": ')
        assert status == 1 and bad is not None
        assert bad["code"] == 6 and "not JSON" in bad["msg"] and bad["cniVersion"] == "1.0.0"
        bad, status = knet_cni(env, {**conf, "cniVersion": "0.1.0"})
        assert status == 1 and bad is not None and bad["code"] == 1
        # node-2: the reference plugins through the node's conflist
        b = await ref.ensure_pod("node-2", "default/b")
        assert b.ip == "10.244.2.2" and b.host_ifname.startswith("veth")
        again = await ref.ensure_pod("node-2", "default/b")    # an agent adopting it
        assert again == b
        ping = in_ns("knet-p-46ecb04a23c7", "ping", "-c", "2", "-W", "2", b.ip)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        back = in_ns(b.netns, "ping", "-c", "1", "-W", "2", "10.244.1.2")
        assert back.returncode == 0, back.stdout
        calls = [json.loads(x) for x in
                 (state / "cni" / "node-2" / "cni.log").read_text().splitlines()]
        assert [(c["plugin"], c["env"]["CNI_COMMAND"], c["exit"]) for c in calls] == [
            ("loopback", "ADD", 0), ("bridge", "ADD", 0), ("portmap", "ADD", 0)]
        bridge = calls[1]
        assert bridge["stdin"]["ipam"]["type"] == "host-local"
        assert bridge["stdout"]["ips"][0]["address"] == "10.244.2.2/24"
        assert calls[2]["stdin"]["prevResult"] == bridge["stdout"]
        # DEL through the chain (reverse order), then the sandbox is gone
        await ref.delete_pod("node-2", "default/b")
        calls = [json.loads(x) for x in
                 (state / "cni" / "node-2" / "cni.log").read_text().splitlines()]
        assert [(c["plugin"], c["env"]["CNI_COMMAND"]) for c in calls[3:]] == [
            ("portmap", "DEL"), ("bridge", "DEL"), ("loopback", "DEL")]
        assert not Path(f"/run/netns/{b.netns}").exists()
        leases = state / "cni" / "node-2" / "ipam" / "knet"
        assert not (leases / "10.244.2.2").exists()
        _, status = knet_cni({**env, "CNI_COMMAND": "DEL"}, conf)
        assert status == 0 and not Path(netns).exists()
    finally:
        await dp.cleanup()
        await dp.close()


@pytest.fixture(scope="module")
def refcluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with cluster_up(tmp_path_factory.mktemp("cniref"), "--cni", "reference") as c:
        yield c


def test_a_cluster_wired_by_the_reference_plugins(refcluster: Cluster) -> None:
    c = refcluster
    c.kubectl("apply", "-f", "-", input="""
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  nodeName: node-2
  containers: [{name: c, image: knet/whoami, ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: client}}
spec:
  nodeName: node-1
  containers: [{name: c, image: busybox, command: ["sleep", "3600"]}]
""")
    c.ready_pods("app in (web,client)", 2, timeout=60)
    out = c.exec("client", "curl", "-s", "-m", "5", "http://web/").stdout   # DNS + Service
    assert "Hostname: web" in out
    log = c.state_dir / "cni" / "node-2" / "cni.log"
    adds = [json.loads(x) for x in log.read_text().splitlines()]
    web_ip = c.get("pod", "web")["status"]["podIP"]
    assert any(a["plugin"] == "bridge" and a["env"]["CNI_COMMAND"] == "ADD"
               and "K8S_POD_NAME=web;" in a["env"]["CNI_ARGS"]
               and a["stdout"]["ips"][0]["address"] == f"{web_ip}/24" for a in adds)
    conflist = json.loads((c.state_dir / "cni" / "node-2" / "10-knet.conflist").read_text())
    assert [p["type"] for p in conflist["plugins"]] == ["bridge", "portmap"]
    c.kubectl("delete", "pod", "web", "--wait=true", timeout=60)
    c.wait("bridge DEL for web", lambda: any(
        json.loads(x)["plugin"] == "bridge" and json.loads(x)["env"]["CNI_COMMAND"] == "DEL"
        and "K8S_POD_NAME=web;" in json.loads(x)["env"]["CNI_ARGS"]
        for x in log.read_text().splitlines()), timeout=30)
