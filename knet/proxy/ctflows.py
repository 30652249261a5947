"""Flow records of the kernel proxy (nftables mode), made from conntrack events.

In nftables mode no byte crosses the proxy process: the kernel DNATs. What the userspace proxy
writes per connection is read back from conntrack instead: a NEW entry with destination NAT
whose original destination is a ClusterIP:port or a node IP:NodePort of the service table is
a connection through a Service; its reply tuple names the endpoint the `numgen`/affinity rule
chose. The record is put in the ring at NEW (so `knet flows` and `knet trace` see it at once)
and completed in place when the connection closes (TCP TIME_WAIT/CLOSE, or DESTROY): bytes
from conntrack's counters (IP bytes, headers included), duration, and ERROR if the endpoint
never answered. Pure: events and the counters lookup are handed in.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from knet.dataplane.conntrack import CtEvent
from knet.dataplane.nflog import Logged
from knet.proxy.config import ServicePort, ServiceTable
from knet.proxy.flows import DROPPED, ERROR, REFUSED, FlowRecord, FlowRing
from knet.proxy.nftcompile import DROP_PREFIX, endpoint_chain

__all__ = ["ConntrackFlows", "stale_udp_endpoints"]

PROTOS = {6: "TCP", 17: "UDP"}
CLOSED = ("TIME_WAIT", "CLOSE")
Frontends = Callable[[ServicePort], "list[tuple[str, int]]"]
Counters = Callable[[CtEvent], "tuple[int, int] | None"]


def stale_udp_endpoints(old: ServiceTable, new: ServiceTable) -> set[tuple[str, int]]:
    """UDP endpoints (ip, port) a sync took away from a service port: their conntrack entries
    must go, or a client that keeps sending stays stuck on them (kube-proxy clears them too)."""
    out: set[tuple[str, int]] = set()
    for key, sp in old.items():
        if sp.protocol != "UDP":
            continue
        now = new.get(key)
        keep = {(e.ip, e.port) for e in now.endpoints} if now is not None else set()
        out |= {(e.ip, e.port) for e in sp.endpoints} - keep
    return out


@dataclass
class _Open:
    rec: FlowRecord
    started: float
    established: bool = False


class ConntrackFlows:
    """Turns conntrack events into FlowRecords in `ring`; `set_table` keeps it current."""

    def __init__(self, node: str, ring: FlowRing, *, node_ips: Iterable[str] = (),
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, max_open: int = 65536) -> None:
        self.node, self.ring, self.node_ips = node, ring, tuple(node_ips)
        self.clock, self.wall, self.max_open = clock, wall, max_open
        self.by_dst: dict[tuple[str, str, int], ServicePort] = {}
        self.table: ServiceTable = {}
        self.open: dict[int, _Open] = {}
        self._last_refused: tuple[tuple[str, str, int, str, int], float] | None = None

    def __repr__(self) -> str:
        return f"<ConntrackFlows {self.node} {len(self.by_dst)} frontends {len(self.open)} open>"

    def set_table(self, table: ServiceTable, external: Frontends | None = None) -> None:
        """`external(sp)`: where outside traffic reaches the port (NodePorts, LoadBalancer
        addresses, externalIPs: ExternalView.addresses); None: its NodePort on each node IP."""
        by_dst: dict[tuple[str, str, int], ServicePort] = {}
        for sp in table.values():
            by_dst.setdefault((sp.protocol, sp.cluster_ip, sp.port), sp)
            outside = external(sp) if external is not None else \
                [(ip, sp.node_port) for ip in self.node_ips if sp.node_port]
            for ip, port in outside:
                by_dst.setdefault((sp.protocol, ip, port), sp.external_side())
        self.by_dst, self.table = by_dst, table

    def on_event(self, ev: CtEvent, counters: Counters | None = None) -> None:
        if ev.kind == "new":
            self._new(ev)
            return
        op = self.open.get(ev.id)
        if op is None:
            return
        if ev.tcp_state == "ESTABLISHED":
            op.established = True
        if ev.kind == "destroy":
            self._close(ev, op, (ev.bytes_orig, ev.bytes_reply)
                        if ev.bytes_orig is not None else None)
        elif ev.tcp_state in CLOSED:
            self._close(ev, op, counters(ev) if counters is not None else None)

    def on_refused(self, pkt: Logged) -> None:
        """A packet the reject chain (a service without endpoints) or the drop chain (a Local
        traffic policy without endpoints here) logged."""
        proto = pkt.protocol.upper() if pkt.protocol in ("tcp", "udp") else None
        sp = self.by_dst.get((proto, pkt.dst, pkt.dport)) if proto else None
        if sp is None or proto is None:
            return
        key, now = (pkt.protocol, pkt.src, pkt.sport, pkt.dst, pkt.dport), self.clock()
        if self._last_refused is not None and self._last_refused[0] == key \
                and now - self._last_refused[1] < 1.0:
            return                              # the same packet seen at two hooks
        self._last_refused = (key, now)
        dropped = pkt.prefix == DROP_PREFIX
        self.ring.record(FlowRecord(
            time=self.wall(), node=self.node, protocol=proto.lower(), client_ip=pkt.src,
            client_port=pkt.sport, service=sp.service, service_port=sp.port,
            port_name=sp.port_name, verdict=DROPPED if dropped else REFUSED,
            reason="nftables drop-chain (Local traffic policy)" if dropped else
            "nftables reject-chain (no endpoints)",
            error=f"no local endpoints on {self.node}: dropped" if dropped else
            "the service has no ready endpoints: rejected (ICMP port unreachable)"))

    def _new(self, ev: CtEvent) -> None:
        proto = PROTOS.get(ev.proto)
        if proto is None or not ev.dnat:
            return
        sp = self.by_dst.get((proto, ev.dst, ev.dport))
        if sp is None:
            return
        pod = next((e.pod for e in sp.endpoints
                    if (e.ip, e.port) == (ev.reply_src, ev.reply_sport)), "")
        how = f"affinity ClientIP {int(sp.affinity_seconds)}s or random" \
            if sp.affinity_seconds is not None else f"numgen random mod {len(sp.endpoints)}"
        rec = FlowRecord(
            time=self.wall(), node=self.node, protocol=proto.lower(), client_ip=ev.src,
            client_port=ev.sport, service=sp.service, service_port=sp.port,
            port_name=sp.port_name, endpoint_ip=ev.reply_src, endpoint_port=ev.reply_sport,
            endpoint_pod=pod,
            reason=f"nftables {endpoint_chain(sp, ev.reply_src, ev.reply_sport)} ({how})")
        if len(self.open) >= self.max_open:   # a flood of never-closed flows: forget the oldest
            self.open.pop(next(iter(self.open)))
        self.open[ev.id] = _Open(rec, self.clock(), established=ev.proto != 6)
        self.ring.record(rec)

    def _close(self, ev: CtEvent, op: _Open, counted: tuple[int | None, int | None] | None) -> None:
        self.open.pop(ev.id, None)
        rec = op.rec
        rec.duration = round(self.clock() - op.started, 6)
        if counted is not None:
            rec.bytes_sent, rec.bytes_received = counted[0] or 0, counted[1] or 0
        if not op.established:
            rec.verdict = ERROR
            rec.error = f"the endpoint {ev.reply_src}:{ev.reply_sport} did not accept " \
                        f"(conntrack {ev.tcp_state or ev.kind})"
