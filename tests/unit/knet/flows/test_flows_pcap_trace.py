"""The pcap writer (read back by scapy), BPF compilation, packet summaries, and how a trace
assigns captured packets to hops and says where a path breaks."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from flows_testkit import make_view
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

from knet.flows.bpf import BpfError, compile_filter
from knet.flows.capture import Frame
from knet.flows.cluster import ClusterView
from knet.flows.decode import summary
from knet.flows.pcap import PcapWriter
from knet.flows.probe import Answer
from knet.flows.trace import _assemble, _ifaces, _service_target

NS = 1_000_000_000


def tcp(ts_ns: int, src: str, sport: int, dst: str, dport: int, flags: str,
        payload: bytes = b"") -> Frame:
    raw = bytes(Ether() / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags)
                / payload)
    return Frame(ts_ns, raw, False)


def test_pcap_is_written_atomically_and_read_back_by_scapy(tmp_path: Path) -> None:
    out = tmp_path / "x.pcap"
    w = PcapWriter(out)
    t = 1_700_000_000 * NS + 123_456_789
    w.write(t, tcp(t, "10.244.1.3", 5000, "10.96.0.20", 80, "S").data)
    w.write(t + 1000, tcp(t, "10.96.0.20", 80, "10.244.1.3", 5000, "SA").data)
    assert not out.exists() and len(list(tmp_path.iterdir())) == 1   # only the .part file
    assert w.commit() == out
    assert [p.name for p in tmp_path.iterdir()] == ["x.pcap"]
    pkts = rdpcap(str(out))
    assert [p[TCP].flags for p in pkts] == ["S", "SA"]
    assert pkts[0][IP].dst == "10.96.0.20"
    assert float(pkts[0].time) == pytest.approx(1_700_000_000.123456789, abs=1e-6)


def test_aborted_pcap_leaves_nothing(tmp_path: Path) -> None:
    w = PcapWriter(tmp_path / "y.pcap")
    w.write(1, b"\x00" * 60)
    w.abort()
    w.abort()
    assert list(tmp_path.iterdir()) == []


def test_pcap_in_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    from knet.flows.pcap import PcapError
    with pytest.raises(PcapError, match=r"nope/z.pcap: cannot write the capture: No such file"):
        PcapWriter(tmp_path / "nope" / "z.pcap")


def test_bpf_compiles_with_libpcap_and_reports_syntax_errors() -> None:
    prog = compile_filter("tcp port 80")
    assert prog[-1][0] == 0x06 and len(prog) > 5          # ends with RET
    with pytest.raises(BpfError, match=r"^filter 'tcp port': .*syntax error"):
        compile_filter("tcp port")


def test_summary_names_both_ends() -> None:
    view = make_view()
    f = tcp(time.time_ns(), "10.244.1.3", 5000, "10.96.0.20", 80, "S")
    line = summary(f, view.name_of)
    assert line.endswith("< 10.244.1.3:5000 (default/client) -> 10.96.0.20:80 "
                         "(svc default/web) TCP S len 0")


def _exchange(t: int, a: tuple[str, int], b: tuple[str, int]) -> list[Frame]:
    return [tcp(t, *a, *b, "S"), tcp(t + 10, *b, *a, "SA"), tcp(t + 20, *a, *b, "A"),
            tcp(t + 30, *a, *b, "PA", b"GET / HTTP/1.1\r\n\r\n")]


def _cross_node_trace(view: ClusterView, flow: dict[str, object] | None,
                      leg2_seen_at: set[str]) -> object:
    client = view.pods["default/client"]
    target = _service_target("svc/web:80", view.services["default/web"], 80, "web")
    ifaces = _ifaces(view, client, target)
    t = 1_700_000_000 * NS
    leg1 = _exchange(t + 1000, ("10.244.1.3", 40000), ("10.96.0.20", 80))
    probe = _exchange(t + 500, ("10.244.2.1", 555), ("10.244.2.2", 8080))  # before: ignored
    leg2 = _exchange(t + 5000, ("172.18.0.2", 41000), ("10.244.2.2", 8080))
    frames = {k: [] for k in ifaces}
    frames["client"] = leg1
    frames["node-1:cni0"] = leg1
    for key in leg2_seen_at:
        frames[key] = probe + leg2
    answer = Answer(ok=True, local=("10.244.1.3", 40000), started_ns=t + 900, status=200,
                    upstream="web-b")
    return _assemble(view, client, target, ifaces, frames, answer, flow)


FLOW = {"endpoint_ip": "10.244.2.2", "endpoint_port": 8080, "endpoint_pod": "default/web-b",
        "reason": "rr#1", "verdict": "FORWARDED"}
FAR = {"node-1:eth0", "node-2:eth0", "node-2:cni0", "pod:default/web-b"}


def test_cross_node_trace_has_every_hop_with_its_connection() -> None:
    trace = _cross_node_trace(make_view(), FLOW, FAR)
    assert [h.label for h in trace.hops] == [  # type: ignore[attr-defined]
        "default/client eth0", "node-1 cni0", "proxy node-1", "node-1 eth0 (underlay)",
        "node-2 eth0 (underlay)", "node-2 cni0", "default/web-b eth0 (backend)"]
    hops = {h.label: h for h in trace.hops}  # type: ignore[attr-defined]
    assert hops["proxy node-1"].note == ("svc default/web:80 -> default/web-b "
                                         "(10.244.2.2:8080) rr#1 FORWARDED")
    assert {p.src for p in hops["node-2 cni0"].packets} == {"172.18.0.2", "10.244.2.2"}
    assert len(hops["default/web-b eth0 (backend)"].packets) == 4   # not the earlier probe
    assert trace.broken == ""  # type: ignore[attr-defined]


def test_a_hop_without_packets_is_where_the_path_breaks() -> None:
    trace = _cross_node_trace(make_view(), FLOW, {"node-1:eth0"})
    assert trace.broken == ("at node-2 eth0 (underlay): no packets of this connection "  # type: ignore[attr-defined]
                            "seen there")


def test_refused_at_the_proxy() -> None:
    flow = {"endpoint_ip": "", "endpoint_port": 0, "endpoint_pod": "", "verdict": "REFUSED"}
    trace = _cross_node_trace(make_view(), flow, set())
    assert [h.label for h in trace.hops][-1] == "proxy node-1"  # type: ignore[attr-defined]
    assert trace.broken == ("at proxy node-1: REFUSED (the service has no ready "  # type: ignore[attr-defined]
                            "endpoints)")


MESH_FLOW = {"endpoint_ip": "10.244.2.2", "endpoint_port": 8080,
             "endpoint_pod": "default/web-b", "reason": "rr#1", "verdict": "FORWARDED",
             "mtls": True, "source_identity": "spiffe://cluster.local/ns/default/sa/client",
             "destination_identity": "spiffe://cluster.local/ns/default/sa/web"}


def test_a_meshed_clients_trace_shows_outbound_15001_and_hbone_15008() -> None:
    """The request never crosses the client's eth0 as sent (redirected in its netns); the
    in-pod proxy's HBONE connection from the client pod's IP to the endpoint's 15008 is what
    every interface carries, and the server side's record names the verified peer."""
    view = make_view()
    client = view.pods["default/client"]
    target = _service_target("svc/web:80", view.services["default/web"], 80, "web")
    ifaces = _ifaces(view, client, target)
    t = 1_700_000_000 * NS
    hbone = _exchange(t + 5000, ("10.244.1.3", 42000), ("10.244.2.2", 15008))
    frames = {k: list(hbone) if k != "pod:default/web-a" else [] for k in ifaces}
    answer = Answer(ok=True, local=("10.244.1.3", 40000), started_ns=t + 900, status=200)
    server = [{"port_name": "hbone", "client_ip": "10.244.1.3", "client_port": 42000,
               "source_identity": "spiffe://cluster.local/ns/default/sa/client",
               "endpoint_port": 8080, "verdict": "FORWARDED"}]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("knet.flows.meshtrace.proxy_flows", lambda node, since, timeout: server)
        trace = _assemble(view, client, target, ifaces, frames, answer, MESH_FLOW)
    labels = [h.label for h in trace.hops]
    assert labels == [
        "default/client outbound :15001 (in-pod, node-1's proxy)",
        "default/client eth0 (HBONE :15008, mTLS)", "node-1 cni0 (HBONE :15008, mTLS)",
        "node-1 eth0 (underlay) (HBONE :15008, mTLS)",
        "node-2 eth0 (underlay) (HBONE :15008, mTLS)", "node-2 cni0 (HBONE :15008, mTLS)",
        "default/web-b eth0 (backend) (HBONE :15008, mTLS)",
        "default/web-b inbound :15008 (node-2's proxy)"]
    assert trace.hops[0].note == (
        "svc default/web:80 -> default/web-b (10.244.2.2:8080) rr#1 FORWARDED mTLS "
        "spiffe://cluster.local/ns/default/sa/client -> "
        "spiffe://cluster.local/ns/default/sa/web via HBONE :15008")
    assert all(len(h.packets) == 4 for h in trace.hops if h.kind == "iface")
    assert trace.hops[-1].note == ("peer spiffe://cluster.local/ns/default/sa/client "
                                   "verified -> app :8080 FORWARDED")
    assert trace.broken == ""
    frames["node-2:eth0"] = []
    trace = _assemble(view, client, target, ifaces, frames, answer, MESH_FLOW)
    assert trace.broken == ("at node-2 eth0 (underlay) (HBONE :15008, mTLS): no packets of "
                            "this connection seen there")
