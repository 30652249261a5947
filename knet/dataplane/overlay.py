"""The VXLAN overlay's data, in Flannel's shape (pure: no netlink here; vxlan.py programs it).

Each node publishes on its Node object what Flannel's vxlan backend publishes:
`flannel.alpha.coreos.com/backend-type: vxlan`, `.../backend-data: {"VNI":1,"VtepMAC":"..."}`
and `.../public-ip: <underlay IP>`. Every other node reads those annotations and programs, on its
own VXLAN device `flannel.1` (VNI 1, UDP 8472, MTU 1450): an FDB entry VtepMAC -> public IP, a
permanent neighbour <peer pod subnet>.0 -> VtepMAC, and a route <peer pod /24> via that .0 onlink
dev flannel.1. A peer whose annotations are malformed is a `PeerProblem` (the agent records an
Event and skips that peer); it never stops the others from being programmed.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any, Protocol

from knet.dataplane import names
from knet.dataplane.base import NodeInfo

__all__ = [
    "ANN_BACKEND_DATA", "ANN_BACKEND_TYPE", "ANN_PUBLIC_IP", "BACKENDS", "VXLAN_DEVICE",
    "VXLAN_MTU", "VXLAN_PORT", "VXLAN_VNI", "Overlay", "PeerProblem", "VxlanPeer",
    "node_annotations", "parse_peer", "parse_peers", "vtep_mac",
]

BACKENDS = ("host-gw", "vxlan")
VXLAN_DEVICE = "flannel.1"        # Flannel names it flannel.<VNI>
VXLAN_VNI = 1
VXLAN_PORT = 8472                 # the Linux kernel's historical VXLAN port, Flannel's default
VXLAN_MTU = 1450                  # 1500 - 50 bytes of outer Ethernet/IP/UDP/VXLAN headers
ANN_PREFIX = "flannel.alpha.coreos.com/"
ANN_BACKEND_TYPE = ANN_PREFIX + "backend-type"
ANN_BACKEND_DATA = ANN_PREFIX + "backend-data"
ANN_PUBLIC_IP = ANN_PREFIX + "public-ip"
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")

Obj = dict[str, Any]


@dataclass(frozen=True)
class VxlanPeer:
    """Another node's VTEP: where its pods live and how to reach them through the tunnel."""

    name: str
    pod_cidr: str        # e.g. 10.244.2.0/24
    vtep_mac: str        # MAC of its flannel.1
    public_ip: str       # its underlay address (the outer destination)

    @property
    def vtep_ip(self) -> str:
        """The address of the peer's flannel.1: its pod subnet's network address (.0)."""
        return str(ipaddress.IPv4Network(self.pod_cidr).network_address)

    def __repr__(self) -> str:
        return f"<VxlanPeer {self.name} {self.pod_cidr} {self.vtep_mac} via {self.public_ip}>"


@dataclass(frozen=True)
class PeerProblem:
    """A Node whose overlay annotations cannot be used, and why (for an Event)."""

    node: str
    problem: str


def vtep_mac(underlay_ip: str) -> str:
    """A stable, locally administered MAC for a node's flannel.1 (0a:5a:<underlay IP>);
    Flannel lets the kernel pick one at random and republishes it; stable is simpler to read."""
    return names.pod_mac(underlay_ip, first=0x5A)


def node_annotations(info: NodeInfo) -> dict[str, str]:
    """What this node's agent writes on its Node so the others can reach its pods."""
    data = {"VNI": VXLAN_VNI, "VtepMAC": vtep_mac(info.underlay_ip)}
    return {ANN_BACKEND_TYPE: "vxlan", ANN_BACKEND_DATA: json.dumps(data, separators=(",", ":")),
            ANN_PUBLIC_IP: info.underlay_ip}


def parse_peer(node: Obj) -> VxlanPeer | PeerProblem | None:
    """The VXLAN peer a Node describes; None if it does not (yet) take part in the overlay
    (no backend annotations at all, or no podCIDR yet); a PeerProblem if it is malformed."""
    meta = node.get("metadata") or {}
    name = str(meta.get("name", "?"))
    ann = meta.get("annotations") or {}
    if not any(k.startswith(ANN_PREFIX) for k in ann):
        return None
    cidr = (node.get("spec") or {}).get("podCIDR")
    if not cidr:
        return None

    def bad(what: str) -> PeerProblem:
        return PeerProblem(name, f"node {name}: {what}; the node's agent writes it (restart it "
                           f"with 'knet node stop {name}' and 'knet node start {name}')")

    kind = ann.get(ANN_BACKEND_TYPE)
    if kind != "vxlan":
        return bad(f"annotation {ANN_BACKEND_TYPE} is {kind!r}, expected 'vxlan' (every node of "
                   "a cluster uses one backend)")
    raw = ann.get(ANN_BACKEND_DATA)
    try:
        data = json.loads(raw) if isinstance(raw, str) else None
    except json.JSONDecodeError as exc:
        return bad(f"annotation {ANN_BACKEND_DATA} is not JSON ({exc.msg} at char {exc.pos})")
    if not isinstance(data, dict):
        return bad(f"annotation {ANN_BACKEND_DATA} must be a JSON object such as "
                   f'{{"VNI":1,"VtepMAC":"0a:5a:ac:12:00:03"}}, got {raw!r}')
    if data.get("VNI") != VXLAN_VNI:
        return bad(f"annotation {ANN_BACKEND_DATA} has VNI {data.get('VNI')!r}, this cluster's "
                   f"overlay is VNI {VXLAN_VNI}")
    mac = data.get("VtepMAC")
    if not isinstance(mac, str) or not _MAC.match(mac.lower()):
        return bad(f"annotation {ANN_BACKEND_DATA} has VtepMAC {mac!r}, not a MAC address "
                   "(six hex pairs separated by ':')")
    ip = ann.get(ANN_PUBLIC_IP)
    try:
        public = str(ipaddress.IPv4Address(ip))
    except (ValueError, TypeError):
        return bad(f"annotation {ANN_PUBLIC_IP} is {ip!r}, not an IPv4 address")
    try:
        net = ipaddress.IPv4Network(cidr, strict=True)
    except ValueError:
        return bad(f"spec.podCIDR {cidr!r} is not an IPv4 network")
    return VxlanPeer(name=name, pod_cidr=str(net), vtep_mac=mac.lower(), public_ip=public)


def parse_peers(nodes: list[Obj], *, self_name: str) -> tuple[list[VxlanPeer], list[PeerProblem]]:
    """The usable peers among `nodes` (this node excluded) and the problems of the others.
    Two peers claiming one pod CIDR or one VTEP MAC: the first by name wins, the other is a
    problem (programming both would send one subnet's packets to two nodes)."""
    peers: list[VxlanPeer] = []
    problems: list[PeerProblem] = []
    seen_cidr: dict[str, str] = {}
    seen_mac: dict[str, str] = {}
    for node in sorted(nodes, key=lambda n: str((n.get("metadata") or {}).get("name", ""))):
        got = parse_peer(node)
        if got is None or (isinstance(got, VxlanPeer) and got.name == self_name):
            continue
        if isinstance(got, PeerProblem):
            problems.append(got)
            continue
        clash = seen_cidr.get(got.pod_cidr) or seen_mac.get(got.vtep_mac)
        if clash:
            problems.append(PeerProblem(got.name, f"node {got.name}: pod CIDR {got.pod_cidr} or "
                                        f"VtepMAC {got.vtep_mac} is already node {clash}'s; "
                                        "skipped"))
            continue
        seen_cidr[got.pod_cidr] = seen_mac[got.vtep_mac] = got.name
        peers.append(got)
    return peers, problems


class Overlay(Protocol):
    """Programs a node's VXLAN device and its peers; both calls are idempotent."""

    async def ensure_device(self, node: NodeInfo) -> None: ...

    async def set_peers(self, node: NodeInfo, peers: list[VxlanPeer]) -> None: ...

    async def close(self) -> None: ...


class FakeOverlay:
    """In-memory Overlay for unit tests: remembers the device and the peers per node."""

    def __init__(self) -> None:
        self.devices: dict[str, str] = {}            # node -> VTEP MAC
        self.peers: dict[str, list[VxlanPeer]] = {}

    async def ensure_device(self, node: NodeInfo) -> None:
        self.devices[node.name] = vtep_mac(node.underlay_ip)

    async def set_peers(self, node: NodeInfo, peers: list[VxlanPeer]) -> None:
        if node.name not in self.devices:
            raise RuntimeError(f"node {node.name}: {VXLAN_DEVICE} not made; ensure_device first")
        self.peers[node.name] = list(peers)

    async def close(self) -> None:
        return None
