"""A VXLAN frame (the overlay's UDP 8472) decodes as its inner packet with the outer headers
and the VNI in front, so captures on the underlay name the pods inside."""

from __future__ import annotations

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN

from knet.flows.capture import Frame
from knet.flows.decode import dissect, summary


def vxlan_frame(port: int = 8472) -> Frame:
    inner = (Ether(src="0a:5a:ac:12:00:02", dst="0a:5a:ac:12:00:03")
             / IP(src="10.244.1.2", dst="10.244.2.3") / TCP(sport=40000, dport=80, flags="S"))
    outer = (Ether() / IP(src="172.18.0.2", dst="172.18.0.3") / UDP(sport=51234, dport=port)
             / VXLAN(vni=1, flags=0x08) / inner)
    return Frame(1_700_000_000_000_000_000, bytes(outer), True)


def test_vxlan_on_8472_shows_outer_vni_and_inner() -> None:
    p = dissect(vxlan_frame())
    assert (p.proto, p.src, p.dst, p.sport, p.dport, p.flags) == (
        "TCP", "10.244.1.2", "10.244.2.3", 40000, 80, "S")
    assert p.vni == 1
    assert p.encap == "172.18.0.2:51234 -> 172.18.0.3:8472 VXLAN vni 1"
    names = {"10.244.1.2": "default/client", "10.244.2.3": "default/web"}.get
    line = summary(vxlan_frame(), lambda ip: names(ip) or "")
    assert ("172.18.0.2:51234 -> 172.18.0.3:8472 VXLAN vni 1 | 10.244.1.2:40000 "
            "(default/client) -> 10.244.2.3:80 (default/web) TCP S len 0") in line


def test_plain_udp_is_not_vxlan() -> None:
    raw = bytes(Ether() / IP(src="172.18.0.2", dst="172.18.0.3") / UDP(sport=5, dport=53)
                / b"x")
    p = dissect(Frame(0, raw, False))
    assert p.proto == "UDP" and p.vni is None and p.encap == ""
