"""Which source a backend sees (knet/proxy/source.py): kube-proxy's masquerade rules as a
pure decision, one case per rule, and the flag that turns preservation off end to end."""

from __future__ import annotations

import pytest

from knet.proxy.source import Origin, SourcePolicy

NODE_IP, GATEWAY = "172.18.0.2", "10.244.1.1"
POLICY = SourcePolicy("10.244.1.0/24", cluster_pods="10.244.0.0/16",
                      node_ips={NODE_IP, GATEWAY})
POD, OTHER_NODE_POD, HOST = "10.244.1.5", "10.244.2.7", "172.18.0.1"
BACKEND, REMOTE_BACKEND = "10.244.1.9", "10.244.2.9"


@pytest.mark.parametrize(("origin", "endpoint", "kept", "why"), [
    # ClusterIP from this node's pods: kept, port and all, for local and remote backends
    (Origin(POD, 40000), BACKEND, True, "preserved"),
    (Origin(POD, 40000), REMOTE_BACKEND, True, "preserved"),
    # hairpin: the pod is its own backend (kube-proxy's KUBE-SEP masquerade)
    (Origin(POD, 40000), POD, False, "masquerade: hairpin"),
    # a hostNetwork endpoint on this node answers from the node's stack, never through the
    # transparent socket: masquerade (another node's hostNetwork endpoint routes back: kept)
    (Origin(POD, 40000), NODE_IP, False, "masquerade: the endpoint is this node (hostNetwork)"),
    # ClusterIP from outside the pod CIDR (the node, hostNetwork): masquerade
    (Origin("10.96.0.1", 5), BACKEND, False, "masquerade: client outside the pod CIDR"),
    (Origin(NODE_IP, 5), BACKEND, False, "masquerade: from the node itself"),
    (Origin(GATEWAY, 5), BACKEND, False, "masquerade: from the node itself"),
    # another node's pod: its replies would go to its own node
    (Origin(OTHER_NODE_POD, 5), BACKEND, False, "masquerade: a pod of another node"),
    # NodePort / LoadBalancer with externalTrafficPolicy Cluster: always masquerade
    (Origin(HOST, 5, external=True), BACKEND, False,
     "masquerade: externalTrafficPolicy Cluster"),
    (Origin(POD, 5, external=True), BACKEND, False, "masquerade: externalTrafficPolicy Cluster"),
    # externalTrafficPolicy Local: an outside client is kept ...
    (Origin(HOST, 5, external=True, external_local=True), BACKEND, True, "preserved"),
    # ... unless sent to another node's endpoint (its reply would not come back here)
    (Origin(HOST, 5, external=True, external_local=True), REMOTE_BACKEND, False,
     "masquerade: externalTrafficPolicy Local with another node's endpoint"),
    # ... the node itself is masqueraded, and pods are treated as ClusterIP traffic
    (Origin(NODE_IP, 5, external=True, external_local=True), BACKEND, False,
     "masquerade: from the node itself"),
    (Origin(POD, 5, external=True, external_local=True), REMOTE_BACKEND, True, "preserved"),
    (Origin(OTHER_NODE_POD, 5, external=True, external_local=True), BACKEND, False,
     "masquerade: a pod of another node"),
])
def test_kube_proxy_masquerade_rules(origin: Origin, endpoint: str, kept: bool, why: str) -> None:
    bind = POLICY.bind(origin, endpoint)
    assert bind == ((origin.ip, origin.port) if kept else None)
    assert POLICY.why(origin, endpoint) == why


def test_not_an_ipv4_address_is_masqueraded() -> None:
    assert POLICY.bind(Origin("?", 0), BACKEND) is None
    assert POLICY.bind(Origin("fd00::1", 0), BACKEND) is None


def test_repr_names_the_node_range() -> None:
    assert "10.244.1.0/24" in repr(POLICY)


def test_knet_up_flag_reaches_the_proxy_command(tmp_path: object) -> None:
    from pathlib import Path

    from knet.cluster.components import proxy_argv
    from knet.cluster.state import ClusterOptions, ClusterRecord

    rec = ClusterRecord(state_dir=Path(str(tmp_path)), nodes=1)
    assert "--no-preserve-source-ip" not in proxy_argv(rec, "node-1")
    rec.options = ClusterOptions.asked({"preserve_source_ip": False})
    rec.save()
    loaded = ClusterRecord.load(Path(str(tmp_path)))
    assert loaded is not None and loaded.options.preserve_source_ip is False
    assert "--no-preserve-source-ip" in proxy_argv(loaded, "node-1")


def test_knet_up_parses_the_switch() -> None:
    import argparse

    from knet.cli.commands import cluster

    parser = argparse.ArgumentParser()
    cluster.register(parser.add_subparsers())
    assert parser.parse_args(["up"]).preserve_source_ip is None   # not asked: default or recorded
    assert parser.parse_args(["up", "--no-preserve-source-ip"]).preserve_source_ip is False
