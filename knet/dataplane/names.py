"""Names of the kernel objects knet makes, derived from their owners (pure, no netlink).

Interface names must fit in 15 characters (IFNAMSIZ - 1), so per-pod and per-node names
are a short prefix plus a hash of the owner; netns names are files under /run/netns and
carry the `knet-` prefix. Every input is validated first: a bad node or pod name is a
clear `UsageError`, never a half-made object.
"""

from __future__ import annotations

import hashlib
import re

from knet.errors import UsageError

__all__ = [
    "HOST_BRIDGE",
    "IFNAMSIZ",
    "NODE_BRIDGE",
    "POD_IFNAME",
    "SVC_IFNAME",
    "node_host_ifname",
    "node_netns",
    "pod_host_ifname",
    "pod_mac",
    "pod_netns",
    "validate_node_name",
    "validate_pod_key",
]

IFNAMSIZ = 15
HOST_BRIDGE = "knet0"       # host side of the underlay
NODE_BRIDGE = "cni0"        # pod bridge in each node netns
SVC_IFNAME = "knet-svc"     # address-only device for ClusterIPs in each node netns
POD_IFNAME = "eth0"

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# node netns is "knet-<node>"; keep it a sane file name length
NODE_NAME_MAX = 63


def _hash(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def validate_node_name(name: str) -> str:
    """Return `name` if it is a DNS-1123 label of at most 63 characters, else raise."""
    if not isinstance(name, str) or not name or len(name) > NODE_NAME_MAX or not _LABEL.match(name):
        raise UsageError(f"node {name!r}: invalid name; use lower-case letters, digits and '-' "
                         f"(at most {NODE_NAME_MAX}, starting and ending with a letter or digit)")
    return name


def validate_pod_key(key: str) -> tuple[str, str]:
    """Split 'namespace/name' after checking both halves the way Kubernetes does."""
    ns, sep, name = key.partition("/") if isinstance(key, str) else ("", "", "")
    if (not sep or not ns or len(ns) > 63 or not _LABEL.match(ns)
            or not name or len(name) > 253 or not _SUBDOMAIN.match(name)):
        raise UsageError(f"pod {key!r}: invalid key; expected 'namespace/name' with a DNS label "
                         "namespace and a DNS subdomain name (lower-case letters, digits, '-', '.')")
    return ns, name


def node_netns(node: str) -> str:
    """Netns of a node: `knet-<node>`."""
    return f"knet-{validate_node_name(node)}"


def node_host_ifname(node: str) -> str:
    """Host end of the node's underlay veth (on knet0): `knu` + 10 hex digits."""
    return "knu" + _hash("node", validate_node_name(node))[:10]


def pod_netns(node: str, key: str) -> str:
    """Netns of a pod: `knet-p-` + 12 hex digits of hash(node, key)."""
    validate_node_name(node)
    validate_pod_key(key)
    return "knet-p-" + _hash("pod", node, key)[:12]


def pod_host_ifname(node: str, key: str) -> str:
    """Node end of the pod's veth (on cni0): `kn` + 10 hex digits of hash(node, key)."""
    validate_node_name(node)
    validate_pod_key(key)
    return "kn" + _hash("pod", node, key)[:10]


def pod_mac(ip: str, *, first: int = 0x58) -> str:
    """Locally administered MAC derived from an IPv4 (0a:58:<ip>, as kubenet did). Bridges
    get one too (from their address) so their MAC does not follow their ports."""
    octets = [int(x) for x in ip.split(".")]
    return f"0a:{first:02x}:" + ":".join(f"{o:02x}" for o in octets)
