"""The mesh's hops in `knet trace`: when the client pod is meshed (its in-pod proxy wrote the
flow record: it carries the client's SPIFFE identity), the request never crosses the
client's eth0 as sent; it is redirected inside the pod to the node proxy's outbound port
15001, and the hop to a meshed endpoint leaves as HBONE, mutual TLS to the endpoint pod's
15008, where the destination node's proxy checks the identity and hands the bytes to the app.

The hops are: the client's outbound 15001 (the in-pod proxy's decision: route, endpoint,
mTLS and both identities), then the interfaces the HBONE connection crosses (found on the
wire by its first packet to the endpoint's 15008: a SYN, or any packet of a pooled
connection), then the endpoint pod's inbound 15008 (the server side's flow record, when it
has been written: the verified identity and the authorization verdict).
"""

from __future__ import annotations

from collections.abc import Callable

from knet.flows.cluster import ClusterView, NodeView, PodView, proxy_flows
from knet.flows.decode import Packet

__all__ = ["HBONE_PORT", "OUTBOUND_PORT", "inbound_note", "is_meshed", "mesh_leg",
           "outbound_note"]

OUTBOUND_PORT = 15001
HBONE_PORT = 15008
Conn = tuple[str, int, str, int]
Flow = dict[str, object]


def is_meshed(flow: Flow | None) -> bool:
    """Did a meshed client's in-pod proxy write this record (PodGuard names the client)?"""
    return bool(flow and flow.get("source_identity"))


def outbound_note(flow: Flow, what: str) -> str:
    ep = flow.get("endpoint_pod") or flow.get("endpoint_ip") or "none"
    parts = [f"{what} -> {ep} ({flow.get('endpoint_ip')}:{flow.get('endpoint_port')})",
             str(flow.get("route") or flow.get("reason") or ""), str(flow.get("verdict") or "")]
    if flow.get("mtls"):
        parts.append(f"mTLS {flow.get('source_identity')} -> "
                     f"{flow.get('destination_identity')} via HBONE :{HBONE_PORT}")
    else:
        parts.append(f"plaintext (the endpoint is outside the mesh), as "
                     f"{flow.get('source_identity')}")
    if flow.get("error"):
        parts.append(f"({flow['error']})")
    return " ".join(" ".join(parts).split())


def mesh_leg(decoded: dict[str, list[Packet]], client_ip: str, ep_ip: str, after_ns: int,
             mtls: bool, ep_port: int) -> Conn | None:
    """The in-pod proxy's connection to the endpoint (to its 15008 when mTLS): the first SYN
    from the client pod's IP, else the first packet of a pooled connection."""
    port = HBONE_PORT if mtls else ep_port
    packets = sorted((p for ps in decoded.values() for p in ps
                      if (p.src, p.dst, p.dport) == (client_ip, ep_ip, port)
                      and p.ts_ns >= after_ns), key=lambda p: p.ts_ns)
    syn = next((p for p in packets if p.flags == "S"), None)
    first = syn or (packets[0] if packets else None)
    return first.conn if first else None


def inbound_note(view: ClusterView, backend: PodView, leg: Conn | None, since: float,
                 fetch: Callable[[NodeView, float], list[Flow]] | None = None) -> str:
    """What the endpoint's proxy said of the HBONE connection (its record is written when
    the connection closes; a pooled one may still be open)."""
    node = view.nodes.get(backend.node)
    if leg is None or node is None or not node.flows_socket:
        return f"mTLS terminated in {backend.key}'s netns, forwarded to the app"
    get = fetch or (lambda n, s: proxy_flows(n, since=s, timeout=2))
    try:
        rows = get(node, since)
    except (OSError, ValueError):
        rows = []
    rec = next((r for r in reversed(rows) if r.get("port_name") == "hbone"
                and r.get("client_ip") == leg[0] and r.get("client_port") == leg[1]), None)
    if rec is None:
        return (f"mTLS terminated in {backend.key}'s netns, forwarded to the app (no server "
                "record yet: a pooled connection is recorded when it closes)")
    authz = f", authz {rec['authz']} {rec.get('authz_policy') or ''}" if rec.get("authz") \
        else ""
    return " ".join(f"peer {rec.get('source_identity')} verified -> app :"
                    f"{rec.get('endpoint_port')} {rec.get('verdict')}{authz}".split())
