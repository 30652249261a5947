"""Naming addresses, resolving what users type, and drawing the topology."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from knet.flows import topo
from knet.flows.cluster import ClusterView, TargetError
from knet.flows.probe import search_names


def test_addresses_are_named_after_pods_services_and_nodes(view: ClusterView) -> None:
    assert view.name_of("10.244.1.3") == "default/client"
    assert view.name_of("10.96.0.20") == "svc default/web"
    assert view.name_of("172.18.0.3") == "node-2"
    assert view.name_of("10.244.2.1") == "node-2 cni0"
    assert view.name_of("8.8.8.8") == ""


def test_capture_targets(view: ClusterView) -> None:
    pod = view.iface_of("client")
    assert (pod.netns, pod.name, pod.label) == ("knet-p-c", "eth0", "default/client eth0")
    assert view.iface_of("default/web-b").netns == "knet-p-b"
    node = view.iface_of("node-2")
    assert (node.netns, node.name) == ("knet-node-2", "cni0")
    assert view.iface_of("node/node-1", iface="eth0").name == "eth0"
    host = view.iface_of("host:knet0")
    assert (host.netns, host.name) == (None, "knet0")


@pytest.mark.parametrize("target, message", [
    ("nosuch", "pod default/nosuch not found; pods in default: client, pending, web-a"),
    ("web", "pod default/web not found; did you mean default/web-a, default/web-b?"),
    ("pending", "pod default/pending: no network sandbox on any node yet (phase Pending)"),
    ("knet-nosuch-ns:eth0", "netns knet-nosuch-ns not found"),
    ("node-1:", "give NETNS:IFACE"),
])
def test_capture_target_errors_say_what_exists(view: ClusterView, target: str,
                                               message: str) -> None:
    with pytest.raises(TargetError, match=re.escape(message)):
        view.iface_of(target)


def test_service_lookup_and_target_port(view: ClusterView) -> None:
    svc = view.service("svc/web")
    assert svc.target_port(80) == 8080
    with pytest.raises(TargetError, match="service default/nope not found; services: "
                       "default/empty, default/web, kube-system/kube-dns"):
        view.service("nope")


def test_dns_search_path_is_the_pods(view: ClusterView) -> None:
    assert search_names("web", "default") == [
        "web.default.svc.cluster.local.", "web.svc.cluster.local.", "web.cluster.local.",
        "web."]
    assert search_names("web.default.svc.cluster.local.", "x") == [
        "web.default.svc.cluster.local."]


def test_topo_tree_shows_nodes_bridges_pods_and_services(view: ClusterView) -> None:
    text = topo.tree(view)
    lines = text.splitlines()
    assert lines[0] == "cluster"
    assert "├── node node-1  eth0 172.18.0.2  netns knet-node-1" in lines
    assert "│   └── cni0 10.244.1.1  pods 10.244.1.0/24" in lines
    assert any("default/client  10.244.1.3  Running  veth knc" in line for line in lines)
    assert "    ├── svc default/empty  10.96.0.21  80/TCP" in lines
    assert "    │   └── (no endpoints)" in lines
    assert any("default/web-b  10.244.2.2  on node-2" in line for line in lines)


def test_topo_dot_is_valid_graphviz(view: ClusterView) -> None:
    text = topo.dot(view)
    assert text.startswith("digraph knet {") and text.rstrip().endswith("}")
    assert '"svc_default/web" -> "pod_default/web-b"' in text
    if shutil.which("dot") is None:
        pytest.skip("graphviz not installed (scripts/install.sh installs it)")
    r = subprocess.run(["dot", "-Tsvg"], input=text, capture_output=True, text=True,
                         check=False)
    assert r.returncode == 0, r.stderr
    assert "web&#45;b" in r.stdout and "10.96.0.20:80" in r.stdout
    # host, eth0 + cni0 per node, the 4 scheduled pods, 3 services
    assert r.stdout.count('class="node"') == 1 + 2 * 2 + 4 + 3
