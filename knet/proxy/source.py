"""Which source address a backend sees: the client's (preserved) or the node's (masquerade).

Pure, no sockets: `SourcePolicy.bind(origin, endpoint_ip)` answers, per dial, the address an
upstream socket binds to with IP_TRANSPARENT — the client's own (ip, port), as kube-proxy's
DNAT leaves it — or None, the node's own address as today (what kube-proxy's masquerade
gives). The rules are kube-proxy's (pkg/proxy/iptables: KUBE-MARK-MASQ):

- hairpin (a pod reaching itself through its Service): masquerade, else the backend would
  answer itself directly;
- ClusterIP traffic from outside the cluster's pod CIDR (the node itself, hostNetwork pods):
  masquerade;
- NodePort / LoadBalancer / external IP traffic: externalTrafficPolicy Cluster masquerades;
  Local keeps the client's address, except from the node itself (masquerade) and from pods
  (treated as ClusterIP traffic, as kube-proxy short-circuits them).

One knet rule on top: a source is kept only when the backend's replies come back through
this node (its own pods, or outside clients of a Local service served by a local endpoint);
a pod of another node reaching this node's NodePort is masqueraded (its replies would go to
its own node), and so is an outside client sent to another node's endpoint (which
kube-proxy never does for Local: the endpoints the `lb` side picks are local).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass

from control.addresses import POD_CIDR

__all__ = ["Origin", "SourcePolicy"]


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a connection came from and how it arrived."""
    ip: str
    port: int = 0
    external: bool = False        # on a NodePort / LoadBalancer / external IP, not the ClusterIP
    external_local: bool = False  # the Service's externalTrafficPolicy is Local


def _net(cidr: str) -> tuple[int, int]:
    net = ipaddress.IPv4Network(cidr, strict=False)
    return int(net.network_address), int(net.netmask)


def _int(ip: str) -> int:
    try:
        return int(struct.unpack("!I", socket.inet_aton(ip))[0])
    except OSError:
        return -1   # not an IPv4 address: never inside a pod CIDR


def _inside(ip: int, net: tuple[int, int]) -> bool:
    return ip >= 0 and ip & net[1] == net[0]


class SourcePolicy:
    """The decision for one node: its pods' CIDR, the cluster's, the node's own addresses."""

    __slots__ = ("_cluster", "_node", "cluster_pods", "node_ips", "node_pods")

    def __init__(self, node_pods: str, *, cluster_pods: str = POD_CIDR,
                 node_ips: frozenset[str] | set[str] | tuple[str, ...] = ()) -> None:
        self.node_pods, self.cluster_pods = node_pods, cluster_pods
        self.node_ips = frozenset(node_ips)
        self._node, self._cluster = _net(node_pods), _net(cluster_pods)

    def __repr__(self) -> str:
        return f"<SourcePolicy preserve {self.node_pods} (cluster {self.cluster_pods})>"

    def bind(self, origin: Origin, endpoint_ip: str) -> tuple[str, int] | None:
        """(ip, port) for the upstream socket to bind transparently, or None: masquerade."""
        return (origin.ip, origin.port) if not self._masquerade(origin, endpoint_ip) else None

    def why(self, origin: Origin, endpoint_ip: str) -> str:
        """One phrase for flow records and logs: why the source was kept or masqueraded."""
        return self._masquerade(origin, endpoint_ip) or "preserved"

    def _masquerade(self, origin: Origin, endpoint_ip: str) -> str:
        """Why this connection is masqueraded; "" when its source is kept."""
        if origin.ip == endpoint_ip:
            return "masquerade: hairpin"
        if origin.ip in self.node_ips:
            return "masquerade: from the node itself"
        if endpoint_ip in self.node_ips:     # a hostNetwork endpoint on this node: its reply
            return "masquerade: the endpoint is this node (hostNetwork)"  # would not come back
        ip = _int(origin.ip)
        from_pod = _inside(ip, self._cluster)
        if origin.external and not (origin.external_local and from_pod):
            if not origin.external_local:
                return "masquerade: externalTrafficPolicy Cluster"
            if not _inside(_int(endpoint_ip), self._node):  # its reply would skip this node
                return "masquerade: externalTrafficPolicy Local with another node's endpoint"
            return ""
        if not from_pod:
            return "masquerade: client outside the pod CIDR"
        if not _inside(ip, self._node):
            return "masquerade: a pod of another node"
        return ""
