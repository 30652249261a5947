"""The VXLAN overlay's pure half: the annotations a node publishes (Flannel's), and how peers
are read from Node objects, malformed ones reported and skipped; the agent's OverlaySync on the
fake dataplane and overlay (Events once per problem, host-gw routes dropped)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from knet.dataplane.base import NodeInfo, NodeSpec
from knet.dataplane.fake import FakeDataplane
from knet.dataplane.overlay import (
    ANN_BACKEND_DATA,
    ANN_BACKEND_TYPE,
    ANN_PUBLIC_IP,
    FakeOverlay,
    PeerProblem,
    VxlanPeer,
    node_annotations,
    parse_peer,
    parse_peers,
    vtep_mac,
)
from knet.kubelet.overlaysync import EVENT_REASON, OverlaySync

Obj = dict[str, Any]


def info(i: int) -> NodeInfo:
    s = NodeSpec.default(i)
    return NodeInfo(name=s.name, netns=s.netns, underlay_ip=s.underlay_ip, pod_cidr=s.pod_cidr,
                    gateway=s.gateway, host_ifname="x", svc_ifname="knet-svc", mtu=1450)


def node(i: int, **ann: str) -> Obj:
    n = info(i)
    return {"metadata": {"name": n.name, "annotations": {**node_annotations(n), **ann}},
            "spec": {"podCIDR": n.pod_cidr}}


def test_annotations_are_flannels() -> None:
    ann = node_annotations(info(2))
    assert ann[ANN_BACKEND_TYPE] == "vxlan"
    assert json.loads(ann[ANN_BACKEND_DATA]) == {"VNI": 1, "VtepMAC": "0a:5a:ac:12:00:03"}
    assert ann[ANN_PUBLIC_IP] == "172.18.0.3"
    assert ANN_BACKEND_DATA == "flannel.alpha.coreos.com/backend-data"


def test_a_peer_round_trips() -> None:
    peer = parse_peer(node(2))
    assert peer == VxlanPeer("node-2", "10.244.2.0/24", vtep_mac("172.18.0.3"), "172.18.0.3")
    assert isinstance(peer, VxlanPeer) and peer.vtep_ip == "10.244.2.0"


def test_a_node_without_overlay_annotations_or_pod_cidr_is_not_a_peer_yet() -> None:
    assert parse_peer({"metadata": {"name": "n", "annotations": {}}, "spec": {}}) is None
    bare = node(2)
    bare["spec"] = {}
    assert parse_peer(bare) is None


@pytest.mark.parametrize(("ann", "says"), [
    ({ANN_BACKEND_DATA: "{not json"}, "is not JSON"),
    ({ANN_BACKEND_DATA: "[1]"}, "must be a JSON object"),
    ({ANN_BACKEND_DATA: '{"VNI":2,"VtepMAC":"0a:5a:ac:12:00:03"}'}, "VNI 2"),
    ({ANN_BACKEND_DATA: '{"VNI":1,"VtepMAC":"zz"}'}, "VtepMAC 'zz', not a MAC"),
    ({ANN_PUBLIC_IP: "172.18.0.300"}, "public-ip is '172.18.0.300', not an IPv4"),
    ({ANN_BACKEND_TYPE: "host-gw"}, "backend-type is 'host-gw'"),
])
def test_malformed_annotations_name_the_node_and_the_problem(ann: dict[str, str],
                                                             says: str) -> None:
    got = parse_peer(node(3, **ann))
    assert isinstance(got, PeerProblem) and got.node == "node-3"
    assert got.problem.startswith("node node-3: ") and says in got.problem


def test_peers_skip_self_and_the_malformed_and_a_clash() -> None:
    twin = node(3)
    twin["metadata"]["name"] = "node-9"          # claims node-3's CIDR and MAC
    nodes = [node(1), node(2), node(3), node(4, **{ANN_PUBLIC_IP: "nope"}), twin]
    peers, problems = parse_peers(nodes, self_name="node-1")
    assert [p.name for p in peers] == ["node-2", "node-3"]
    assert [p.node for p in problems] == ["node-4", "node-9"]
    assert "already node node-3's" in problems[1].problem


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str]] = []

    async def __call__(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        self.events.append((obj["metadata"]["name"], type_, reason, message))


async def test_sync_programs_peers_drops_host_gw_and_reports_each_problem_once(
        tmp_path: Path) -> None:
    dp = FakeDataplane(tmp_path)
    await dp.ensure_host()
    n1 = await dp.ensure_node(NodeSpec.default(1, mtu=1450))
    await dp.ensure_node_routes("node-1", [NodeSpec.default(2)])       # host-gw before
    overlay, rec = FakeOverlay(), Recorder()
    sync = OverlaySync(overlay=overlay, dataplane=dp, report=rec)
    assert (await sync.start(n1))[ANN_PUBLIC_IP] == "172.18.0.2"
    nodes = [node(1), node(2), node(3, **{ANN_BACKEND_DATA: "{"})]
    problems = await sync.sync(lambda: nodes)
    assert [p.name for p in overlay.peers["node-1"]] == ["node-2"]
    assert [p.node for p in problems] == ["node-3"]
    assert dp.fake.ns["knet-node-1"].routes == {"0.0.0.0/0": "172.18.0.1"}
    await sync.sync(lambda: nodes)                       # the same problem: no new Event
    assert [(e[0], e[1], e[2]) for e in rec.events] == [("node-3", "Warning", EVENT_REASON)]
    assert "not JSON" in rec.events[0][3]
    fixed = [node(1), node(2), node(3)]
    await sync.sync(lambda: fixed)
    assert [p.name for p in overlay.peers["node-1"]] == ["node-2", "node-3"]
    await sync.sync(lambda: [node(1), node(3)])          # node-2 removed
    assert [p.name for p in overlay.peers["node-1"]] == ["node-3"]
    assert len(rec.events) == 1


async def test_own_malformed_annotation_makes_the_node_network_unavailable(
        tmp_path: Path) -> None:
    """The node's own annotations broken (a user's `kubectl annotate --overwrite`): its
    NetworkUnavailable condition turns True naming the problem, as flannel reports it, and
    back to False once they are right; the peers keep being programmed meanwhile."""
    from knet.kubelet.node import conditions
    from knet.kubelet.overlaysync import OWN_REASON, UP_REASON

    dp = FakeDataplane(tmp_path)
    await dp.ensure_host()
    n1 = await dp.ensure_node(NodeSpec.default(1, mtu=1450))
    overlay = FakeOverlay()
    sync = OverlaySync(overlay=overlay, dataplane=dp, report=Recorder())
    await sync.start(n1)
    assert sync.network()[:2] == (False, UP_REASON)
    await sync.sync(lambda: [node(1, **{ANN_BACKEND_DATA: "garbage"}), node(2)])
    down, reason, message = sync.network()
    assert (down, reason) == (True, OWN_REASON) and "node node-1" in message
    assert [p.name for p in overlay.peers["node-1"]] == ["node-2"]
    cond = [c for c in conditions(0.0, sync.network()) if c["type"] == "NetworkUnavailable"]
    assert cond[0]["status"] == "True" and cond[0]["reason"] == OWN_REASON
    await sync.sync(lambda: [node(1), node(2)])
    assert sync.network()[:2] == (False, UP_REASON)
    assert [c["type"] for c in conditions(0.0)] == [                  # host-gw: no condition
        "MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
