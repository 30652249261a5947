"""Turning raw frames into lines a person reads: scapy dissects a frame only when it is
shown, and addresses are named from the cluster view (pod, service, node).

`summary(frame, names)` gives e.g.
`12:04:05.123456 > 10.244.1.3:52274 (default/client) -> 10.104.35.149:80 (svc default/web) TCP S len 0`.
A VXLAN frame (UDP 8472, the overlay's, or 4789) is shown as its inner packet with the outer
header in front: `172.18.0.2:40155 -> 172.18.0.3:8472 VXLAN vni 1 | 10.244.1.2 -> ...`; the
Packet's fields are the inner packet's, so trace matches it to its connection on any hop.
scapy is imported on first use (it costs ~1 s), never at module import.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from knet.flows.capture import Frame

__all__ = ["Packet", "clock_ns", "dissect", "summary"]

Namer = Callable[[str], str]


@dataclass(frozen=True)
class Packet:
    """The fields trace and capture show, taken from one frame."""
    ts_ns: int
    proto: str            # TCP | UDP | ICMP | ARP | IPv6 | other ethertype
    src: str
    dst: str
    sport: int
    dport: int
    flags: str            # TCP flags as tcpdump writes them (S, SA, A, PA, FA, R...)
    length: int           # payload bytes
    info: str             # a short extra (DNS question, ICMP type)
    encap: str = ""       # the outer headers of a tunnelled packet ("" if none)
    vni: int | None = None

    @property
    def conn(self) -> tuple[str, int, str, int]:
        return (self.src, self.sport, self.dst, self.dport)


def _scapy() -> Any:
    from scapy.layers import dns, inet, l2, vxlan  # noqa: F401  (registers the layers)
    from scapy.layers.l2 import Ether
    return Ether


def dissect(frame: Frame) -> Packet:
    from dataclasses import replace

    from scapy.layers.inet import IP, UDP
    from scapy.layers.vxlan import VXLAN

    pkt = _scapy()(frame.data)
    if VXLAN in pkt and IP in pkt and UDP in pkt:
        outer, udp, vx = pkt[IP], pkt[UDP], pkt[VXLAN]
        inner = _dissect(frame.ts_ns, vx.payload, len(bytes(vx.payload)))
        encap = f"{outer.src}:{udp.sport} -> {outer.dst}:{udp.dport} VXLAN vni {vx.vni}"
        return replace(inner, encap=encap, vni=int(vx.vni))
    return _dissect(frame.ts_ns, pkt, len(frame.data))


def _dissect(ts_ns: int, pkt: Any, size: int) -> Packet:
    from scapy.layers.dns import DNS
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.l2 import ARP, Ether

    if not isinstance(pkt, Ether):
        return Packet(ts_ns, "other", "", "", 0, 0, "", size, "")
    if ARP in pkt:
        a = pkt[ARP]
        op = "who-has" if a.op == 1 else "is-at"
        return Packet(ts_ns, "ARP", a.psrc, a.pdst, 0, 0, "", 0, op)
    if IP not in pkt:
        name = "IPv6" if pkt.type == 0x86DD else f"ethertype 0x{pkt.type:04x}"
        return Packet(ts_ns, name, "", "", 0, 0, "", size, "")
    ip = pkt[IP]
    if TCP in pkt:
        t = pkt[TCP]
        return Packet(ts_ns, "TCP", ip.src, ip.dst, t.sport, t.dport, str(t.flags),
                      len(bytes(t.payload)), "")
    if UDP in pkt:
        u = pkt[UDP]
        info = ""
        if DNS in pkt and pkt[DNS].qd is not None:
            d = pkt[DNS]
            q = d.qd[0] if hasattr(d.qd, "__getitem__") else d.qd
            qname = q.qname.decode() if isinstance(q.qname, bytes) else str(q.qname)
            info = f"dns {'response' if d.qr else 'query'} {qname}"
        return Packet(ts_ns, "UDP", ip.src, ip.dst, u.sport, u.dport, "",
                      len(bytes(u.payload)), info)
    if ICMP in pkt:
        return Packet(ts_ns, "ICMP", ip.src, ip.dst, 0, 0, "", len(bytes(pkt[ICMP])),
                      f"type {pkt[ICMP].type} code {pkt[ICMP].code}")
    return Packet(ts_ns, f"IP proto {ip.proto}", ip.src, ip.dst, 0, 0, "", len(ip), "")


def clock_ns(ts_ns: int) -> str:
    sec, ns = divmod(ts_ns, 1_000_000_000)
    return time.strftime("%H:%M:%S", time.localtime(sec)) + f".{ns // 1000:06d}"


def _addr(ip: str, port: int, names: Namer) -> str:
    who = names(ip)
    addr = f"{ip}:{port}" if port else ip
    return f"{addr} ({who})" if who else addr


def describe(p: Packet, names: Namer) -> str:
    """The packet without its timestamp: `10.244.1.3:52274 (default/client) -> ... TCP S len 0`."""
    outer = f"{p.encap} | " if p.encap else ""
    if not p.src:
        return f"{outer}{p.proto} {p.length} bytes"
    parts = [outer + _addr(p.src, p.sport, names), "->", _addr(p.dst, p.dport, names), p.proto]
    if p.flags:
        parts.append(p.flags)
    if p.info:
        parts.append(p.info)
    if p.proto in ("TCP", "UDP"):
        parts.append(f"len {p.length}")
    return " ".join(parts)


def summary(frame: Frame, names: Namer) -> str:
    p = dissect(frame)
    return f"{clock_ns(p.ts_ns)} {'>' if frame.outgoing else '<'} {describe(p, names)}"
