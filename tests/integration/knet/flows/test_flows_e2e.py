"""The flow tools against a real cluster, as a user runs them: `knet flows`, `knet capture`,
`knet trace`, `knet topo`, and what they say about bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest


def knet(cluster: Any, *args: str, check: bool = True, timeout: float = 60) -> Any:
    return cluster.knet(*args, "--state-dir", str(cluster.state_dir), check=check,
                        timeout=timeout)


def popen_knet(cluster: Any, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "knet.cli.main", *args, "--state-dir",
                             str(cluster.state_dir)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_started(proc: subprocess.Popen[str]) -> str:
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert line.startswith("capturing on"), line + proc.stderr.read()
    return line


def curl(cluster: Any, url: str, n: int = 1) -> list[str]:
    out = cluster.exec("client", "sh", "-c", f"for i in $(seq {n}); do curl -s -m 5 {url}; "
                       "echo; done").stdout
    return [line for line in out.splitlines() if line.strip()]


def cluster_ip(cluster: Any, svc: str) -> str:
    return str(cluster.get("service", svc)["spec"]["clusterIP"])


def pod_of(cluster: Any, app: str) -> str:
    return str(cluster.get("pods", "-l", f"app={app}")["items"][0]["metadata"]["name"])


def test_flows_json_has_one_record_per_request_with_the_backend_that_answered(cluster: Any) -> None:
    answers = [json.loads(line) for line in curl(cluster, "http://web/api", 20)]
    assert len(answers) == 20
    time.sleep(0.5)
    out = knet(cluster, "flows", "--service", "web", "--from-pod", "client", "-o", "json").stdout
    recs = [json.loads(line) for line in out.splitlines()]
    assert len(recs) == 20, out
    assert [r["endpoint_pod"] for r in recs] == [f"default/{a['hostname']}" for a in answers]
    assert {r["verdict"] for r in recs} == {"FORWARDED"}
    assert all(r["client_pod"] == "default/client" and r["service"] == "default/web"
               for r in recs)
    assert len({r["endpoint_pod"] for r in recs}) == 2, "round robin uses both replicas"


def test_flows_text_is_one_named_line_per_flow_and_includes_dns(cluster: Any) -> None:
    curl(cluster, "http://near/")
    time.sleep(0.3)
    lines = knet(cluster, "flows", "--service", "near", "--last", "1").stdout.splitlines()
    assert len(lines) == 1
    line = lines[0]
    near = pod_of(cluster, "near")
    assert "default/client (10.244.1." in line and "-> svc default/near:80 ->" in line
    assert f"default/{near} (10.244." in line and "FORWARDED tcp round-robin rr#" in line, line
    dns = knet(cluster, "flows", "--protocol", "dns").stdout
    assert "near.default.svc.cluster.local. A NOERROR" in dns, dns
    assert knet(cluster, "flows", "--node", "node-2", "--service", "near").stdout == ""


def test_capture_writes_a_pcap_with_the_syn_to_the_cluster_ip(cluster: Any, tmp_path: Path) -> None:
    from scapy.layers.inet import IP, TCP
    from scapy.utils import rdpcap

    out = tmp_path / "x.pcap"
    proc = popen_knet(cluster, "capture", "-c", "10", "-w", str(out), "client", "tcp")
    wait_started(proc)
    curl(cluster, "http://web/", 2)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "10 packets captured, 0 dropped" in err
    packets = rdpcap(str(out))
    assert len(packets) == 10
    syn = packets[0]
    assert syn[TCP].flags == "S" and syn[IP].dst == cluster_ip(cluster, "web")
    assert syn[TCP].dport == 80
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.pcap"]


def test_capture_summary_names_pods_and_services(cluster: Any) -> None:
    proc = popen_knet(cluster, "capture", "-c", "3", "node-1", "-i", "cni0", "tcp port 80")
    wait_started(proc)
    curl(cluster, "http://near/")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    first = out.splitlines()[0]
    assert "(default/client) -> " in first and "(svc default/near) TCP S" in first, out


def test_trace_cross_node_names_every_hop_and_the_backend(cluster: Any) -> None:
    r = knet(cluster, "trace", "client", "svc/far:80")
    far = pod_of(cluster, "far")
    hops = [line for line in r.stdout.splitlines() if line[:3].strip().rstrip(".").isdigit()]
    labels = [h.split(".", 1)[1].split("  ")[0].strip() for h in hops]
    assert labels == ["default/client eth0", "node-1 cni0", "proxy node-1",
                      "node-1 eth0 (underlay)", "node-2 eth0 (underlay)", "node-2 cni0",
                      f"default/{far} eth0 (backend)"], r.stdout
    assert f"svc default/far:80 -> default/{far}" in r.stdout and "rr#" in r.stdout
    assert "no packets" not in r.stdout
    assert "172.18.0.2:" in r.stdout, "the proxy's second connection leaves from the underlay"
    assert f"answered by {far} (HTTP 200" in r.stdout


def test_trace_same_node_by_dns_name_with_pcaps(cluster: Any, tmp_path: Path) -> None:
    r = knet(cluster, "trace", "client", "near.default.svc.cluster.local:80", "--pcap",
             str(tmp_path))
    near = pod_of(cluster, "near")
    assert "dns  near.default.svc.cluster.local. A -> " + cluster_ip(cluster, "near") in r.stdout
    assert "node-1 cni0 (to the endpoint)" in r.stdout and "underlay" not in r.stdout
    assert f"default/{near} eth0 (backend)" in r.stdout and f"answered by {near}" in r.stdout
    pcaps = sorted(p.name for p in tmp_path.iterdir())
    assert pcaps == ["01-default_client_eth0.pcap", f"02-default_{near}_eth0.pcap",
                     "03-node-1_cni0.pcap"]


def test_trace_to_a_service_without_endpoints_stops_at_the_proxy(cluster: Any) -> None:
    r = knet(cluster, "trace", "client", "svc/empty:80", check=False)
    assert r.returncode == 1
    assert "BROKEN at proxy node-1: REFUSED (the service has no ready endpoints)" in r.stdout
    assert "backend" not in r.stdout


def test_topo_tree_and_valid_graphviz(cluster: Any, tmp_path: Path) -> None:
    tree = knet(cluster, "topo").stdout
    near = pod_of(cluster, "near")
    assert "node node-1" in tree and f"default/{near}" in tree and "(no endpoints)" in tree
    dot = knet(cluster, "topo", "--format", "dot").stdout
    assert dot.startswith("digraph knet {")
    assert shutil.which("dot"), "graphviz is in scripts/install.sh"
    svg = subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True,
                         check=False)
    assert svg.returncode == 0 and "<svg" in svg.stdout, svg.stderr
    assert knet(cluster, "topo", "--format", "svg").stdout.lstrip().startswith("<?xml")


@pytest.mark.parametrize("args, message", [
    (["capture", "nosuchpod", "-c", "1"], "pod default/nosuchpod not found"),
    (["capture", "-c", "1", "client", "tcp port"], "syntax error"),
    (["capture", "-c", "1", "node-9"], "pod default/node-9 not found"),
    (["capture", "-c", "1", "node-1", "-i", "nope0"], "no interface nope0 in netns knet-node-1"),
    (["trace", "client", "svc/nosuch:80"], "service default/nosuch not found"),
    (["trace", "client", "svc/web:81"], "service default/web has no port 81"),
])
def test_bad_input_is_a_one_line_error(cluster: Any, tmp_path: Path, args: list[str],
                                       message: str) -> None:
    out = tmp_path / "never.pcap"
    r = knet(cluster, *args, *(["-w", str(out)] if args[0] == "capture" else []), check=False)
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []


def test_full_disk_leaves_no_file_and_says_so(cluster: Any, tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(small)], check=True)
    try:
        proc = popen_knet(cluster, "capture", "-c", "200", "-w", str(small / "big.pcap"),
                          "node-1", "tcp")
        wait_started(proc)
        curl(cluster, "http://web/", 10)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 1, err
        assert "the disk is full" in err and len(err.strip().splitlines()) == 1, err
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_pod_deleted_mid_capture_ends_it_with_an_error(cluster: Any, tmp_path: Path) -> None:
    cluster.kubectl("run", "victim", "--image", "busybox", "--restart", "Never", "--",
                    "sleep", "3600")
    cluster.wait("victim running", lambda: cluster.get("pod", "victim")["status"].get("phase")
                 == "Running")
    out = tmp_path / "v.pcap"
    proc = popen_knet(cluster, "capture", "victim", "-w", str(out))
    wait_started(proc)
    cluster.kubectl("delete", "pod", "victim", "--wait=false")
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1, err
    assert "interface went away" in err and "unfinished pcap was removed" in err, err
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_stops_cleanly_and_keeps_the_file(cluster: Any, tmp_path: Path) -> None:
    out = tmp_path / "i.pcap"
    proc = popen_knet(cluster, "capture", "node-1", "-w", str(out), "tcp")
    wait_started(proc)
    curl(cluster, "http://web/")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert f"written to {out}" in err
    assert out.stat().st_size > 24 and sorted(p.name for p in tmp_path.iterdir()) == ["i.pcap"]


def test_trace_to_a_pod_goes_straight_over_the_underlay(cluster: Any) -> None:
    far = pod_of(cluster, "far")
    r = knet(cluster, "trace", "client", f"pod/{far}:80")
    assert "proxy" not in r.stdout
    for hop in ("default/client eth0", "node-1 eth0 (underlay)", "node-2 eth0 (underlay)",
                "node-2 cni0", f"default/{far} eth0 (backend)"):
        assert hop in r.stdout, r.stdout
    assert "no packets" not in r.stdout and f"answered by {far}" in r.stdout


def test_trace_a_dns_query_through_the_kube_dns_service(cluster: Any) -> None:
    r = knet(cluster, "trace", "client", "svc/kube-system/kube-dns:53/udp")
    dns_pod = cluster.get("pods", "-n", "kube-system", "-l", "k8s-app=kube-dns")["items"][0]
    name = f"kube-system/{dns_pod['metadata']['name']}"
    assert f"svc kube-system/kube-dns:53 -> {name}" in r.stdout, r.stdout
    assert "UDP" in r.stdout and f"answered by {name}" in r.stdout


def test_flows_follow_prints_new_records_live(cluster: Any) -> None:
    import selectors

    proc = popen_knet(cluster, "flows", "-f", "--service", "near", "--since", "1ms",
                      "-o", "json")
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    line = ""
    try:
        for _ in range(15):
            curl(cluster, "http://near/")
            if sel.select(timeout=1.0):
                line = proc.stdout.readline()
                break
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=15)
    rec = json.loads(line)
    assert rec["service"] == "default/near" and rec["client_pod"] == "default/client"
