"""The nftables mode around its compiler, without root: conntrack events turned into flow
records (knet.proxy.ctflows), the NftProxier fed like an informer feeds it and programming
FakeNft (one batch per sync, the table deleted at stop), the conntrack parser on a real
ctnetlink message, and `knet up --proxy-mode` recorded for the proxies' command lines."""

from __future__ import annotations

import asyncio
import socket
import struct
from pathlib import Path

from proxy_testkit import endpoint_slice, service
from pyroute2.netlink.nfnetlink.nfctsocket import nfct_msg  # type: ignore[import-untyped]

from knet.cluster.components import proxy_argv
from knet.cluster.state import ClusterOptions, ClusterRecord
from knet.dataplane.conntrack import IPS_DST_NAT, CtEvent, parse
from knet.dataplane.nflog import Logged, parse_messages
from knet.dataplane.nft import FakeNft
from knet.proxy.balancer import Endpoint
from knet.proxy.config import ServicePort
from knet.proxy.ctflows import ConntrackFlows, stale_udp_endpoints
from knet.proxy.flows import ERROR, FORWARDED, FlowRing
from knet.proxy.nftcompile import FAMILY, TABLE
from knet.proxy.nftproxier import NftProxier

WEB = ServicePort("default", "web", "http", "10.96.0.20", 80, "TCP", node_port=30080,
                  endpoints=(Endpoint("10.244.1.5", 8080, "default/a"),
                             Endpoint("10.244.2.5", 8080, "default/b")))


def ev(kind: str, state: str = "", *, dst: str = "10.96.0.20", dport: int = 80,
       status: int = IPS_DST_NAT, ident: int = 7, **kw: object) -> CtEvent:
    return CtEvent(kind, ident, 6, "10.244.1.9", 40000, dst, dport, "10.244.2.5", 8080,
                   "10.244.1.9", status, state, **kw)  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_dnat_connection_to_a_cluster_ip_is_one_record_completed_at_close() -> None:
    ring, clock = FlowRing(), Clock()
    flows = ConntrackFlows("node-1", ring, node_ips=["172.18.0.2"], clock=clock)
    flows.set_table({WEB.key: WEB})
    flows.on_event(ev("new", "SYN_SENT"))
    (rec,) = ring.records()
    assert (rec.service, rec.client_ip, rec.client_port) == ("default/web", "10.244.1.9", 40000)
    assert (rec.endpoint_ip, rec.endpoint_port, rec.endpoint_pod) == ("10.244.2.5", 8080,
                                                                      "default/b")
    assert rec.reason.startswith("nftables endpoint-") and "__10.244.2.5/8080" in rec.reason
    assert rec.verdict == FORWARDED and rec.protocol == "tcp"
    flows.on_event(ev("update", "ESTABLISHED"))
    clock.now = 100.25
    flows.on_event(ev("update", "TIME_WAIT"), counters=lambda _e: (310, 1200))
    assert (rec.bytes_sent, rec.bytes_received, rec.duration) == (310, 1200, 0.25)
    assert not flows.open and len(ring) == 1
    flows.on_event(ev("destroy", bytes_orig=1, bytes_reply=1))   # long after: nothing changes
    assert rec.bytes_sent == 310


def test_nodeport_flows_and_what_is_not_a_service_connection() -> None:
    ring = FlowRing()
    flows = ConntrackFlows("node-1", ring, node_ips=["172.18.0.2"])
    flows.set_table({WEB.key: WEB})
    flows.on_event(ev("new", dst="172.18.0.2", dport=30080, ident=1))
    flows.on_event(ev("new", dst="10.244.2.5", dport=8080, status=0, ident=2))   # pod to pod
    flows.on_event(ev("new", dst="10.96.0.99", dport=80, ident=3))                # not ours
    assert [(r.service, r.service_port) for r in ring.records()] == [("default/web", 80)]


def test_a_connection_the_endpoint_never_accepted_is_an_error() -> None:
    ring = FlowRing()
    flows = ConntrackFlows("node-1", ring)
    flows.set_table({WEB.key: WEB})
    flows.on_event(ev("new", "SYN_SENT"))
    flows.on_event(ev("update", "CLOSE"), counters=lambda _e: None)
    (rec,) = ring.records()
    assert rec.verdict == ERROR and "did not accept" in rec.error


def test_parse_reads_a_ctnetlink_new_event() -> None:
    msg = nfct_msg()
    msg["nfgen_family"] = socket.AF_INET
    tup = {"attrs": [("CTA_TUPLE_IP", {"attrs": [("CTA_IP_V4_SRC", "10.244.1.9"),
                                                 ("CTA_IP_V4_DST", "10.96.0.20")]}),
                     ("CTA_TUPLE_PROTO", {"attrs": [("CTA_PROTO_NUM", 6),
                                                    ("CTA_PROTO_SRC_PORT", 40000),
                                                    ("CTA_PROTO_DST_PORT", 80)]})]}
    rep = {"attrs": [("CTA_TUPLE_IP", {"attrs": [("CTA_IP_V4_SRC", "10.244.2.5"),
                                                 ("CTA_IP_V4_DST", "10.244.1.9")]}),
                     ("CTA_TUPLE_PROTO", {"attrs": [("CTA_PROTO_NUM", 6),
                                                    ("CTA_PROTO_SRC_PORT", 8080),
                                                    ("CTA_PROTO_DST_PORT", 40000)]})]}
    msg["attrs"] = [("CTA_TUPLE_ORIG", tup), ("CTA_TUPLE_REPLY", rep),
                    ("CTA_STATUS", IPS_DST_NAT), ("CTA_ID", 42)]
    msg["header"]["type"] = 1 << 8          # ctnetlink, IPCTNL_MSG_CT_NEW
    msg["header"]["flags"] = 0x400 | 0x200  # NLM_F_CREATE | NLM_F_EXCL: a new entry
    msg.encode()
    (got,) = parse(bytes(msg.data))
    assert got == CtEvent("new", 42, 6, "10.244.1.9", 40000, "10.96.0.20", 80, "10.244.2.5",
                          8080, "10.244.1.9", IPS_DST_NAT)
    assert got.dnat


def test_the_proxier_programs_one_batch_per_sync_and_deletes_its_table_at_stop() -> None:
    async def run() -> None:
        nft = FakeNft()
        p = NftProxier("node-1", nft=nft, netns="knet-node-1", node_ips=["172.18.0.2"],
                       conntrack=False, delay=0.01)
        p.on_service_add(service("web", "10.96.0.20", [{"name": "http", "port": 80,
                                                        "targetPort": 8080}]))
        p.on_endpointslice_add(endpoint_slice("web", [{"name": "http", "port": 8080}],
                                              [("10.244.1.5", "a"), ("10.244.2.5", "b")]))
        p.on_service_synced()
        p.on_endpointslice_synced()
        await asyncio.sleep(0.05)
        await p.wait_applied()
        assert nft.batches == 1 and p.state is not None and len(p.state.chains) == 3
        t = nft.tables[("knet-node-1", FAMILY, TABLE)]
        assert any(c.startswith("service-") for c in t["chains"])
        p.on_service_delete(service("web", "10.96.0.20", []))
        await asyncio.sleep(0.05)
        await p.wait_applied()
        assert nft.batches == 2 and p.state is not None and not p.state.chains
        await p.stop()
        assert ("knet-node-1", FAMILY, TABLE) not in nft.tables

    asyncio.run(run())


def test_proxy_mode_is_recorded_and_passed_to_every_proxy(tmp_path: Path) -> None:
    rec = ClusterRecord(state_dir=tmp_path, nodes=2, options=ClusterOptions(proxy_mode="nftables"))
    rec.save()
    again = ClusterRecord.load(tmp_path)
    assert again is not None and again.options.proxy_mode == "nftables"
    argv = proxy_argv(again, "node-1")
    assert argv[argv.index("--proxy-mode") + 1] == "nftables"
    plain = ClusterRecord(state_dir=tmp_path, nodes=2)
    plain.save()
    loaded = ClusterRecord.load(tmp_path)
    assert loaded is not None and loaded.options.proxy_mode == "userspace"
    assert "--proxy-mode" not in proxy_argv(loaded, "node-1")


def test_udp_entries_to_endpoints_a_sync_took_away_are_deleted() -> None:
    dns = ServicePort("kube-system", "kube-dns", "dns", "10.96.0.10", 53, "UDP",
                      endpoints=(Endpoint("10.244.1.9", 53, ""), Endpoint("10.244.2.9", 53, "")))
    moved = ServicePort("kube-system", "kube-dns", "dns", "10.96.0.10", 53, "UDP",
                        endpoints=(Endpoint("10.244.2.9", 53, ""),))
    assert stale_udp_endpoints({dns.key: dns}, {moved.key: moved}) == {("10.244.1.9", 53)}
    assert stale_udp_endpoints({dns.key: dns}, {}) == {("10.244.1.9", 53), ("10.244.2.9", 53)}
    assert stale_udp_endpoints({WEB.key: WEB}, {}) == set()          # TCP: nothing to clear

    class Watch:
        def __init__(self) -> None:
            self.entries = [
                CtEvent("update", 1, 17, "10.244.1.7", 5000, "10.96.0.10", 53, "10.244.1.9", 53,
                        "10.244.1.7", IPS_DST_NAT),
                CtEvent("update", 2, 17, "10.244.1.7", 5001, "10.96.0.10", 53, "10.244.2.9", 53,
                        "10.244.1.7", IPS_DST_NAT),
                CtEvent("update", 3, 6, "10.244.1.7", 5002, "10.96.0.20", 80, "10.244.1.9", 53,
                        "10.244.1.7", IPS_DST_NAT)]

        def start(self) -> None: ...
        def stop(self) -> None: ...

        def delete(self, match: object) -> int:
            gone = [e for e in self.entries if match(e)]  # type: ignore[operator]
            self.entries = [e for e in self.entries if e not in gone]
            return len(gone)

    async def run() -> list[int]:
        p = NftProxier("node-1", nft=FakeNft(), conntrack=False)
        watch = p.watch = Watch()
        await p._apply({dns.key: dns})
        await p._apply({moved.key: moved})
        return [e.id for e in watch.entries]

    assert asyncio.run(run()) == [2, 3]    # the UDP entry to the gone endpoint only


def test_a_rejected_packet_is_a_refused_record_once() -> None:
    empty = ServicePort("default", "empty", "", "10.96.0.21", 80, "TCP")
    ring, clock = FlowRing(), Clock()
    flows = ConntrackFlows("node-1", ring, clock=clock)
    flows.set_table({empty.key: empty})
    pkt = Logged(0.0, "", "tcp", "10.244.1.9", "10.96.0.21", 40000, 80)
    flows.on_refused(pkt)
    flows.on_refused(pkt)                       # the same SYN logged twice: one record
    flows.on_refused(Logged(0.0, "", "tcp", "10.244.1.9", "10.96.0.99", 40000, 80))  # not a service
    (rec,) = ring.records()
    assert (rec.verdict, rec.service, rec.client_ip) == ("REFUSED", "default/empty", "10.244.1.9")
    clock.now += 2
    flows.on_refused(pkt)                       # a retry later is another refusal
    assert len(ring) == 2


def test_parse_reads_a_logged_packet() -> None:
    ip = bytes([0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0]) + bytes([10, 244, 1, 9]) + \
        bytes([10, 96, 0, 21]) + struct.pack("!HH", 40000, 80) + b"\0" * 16
    attr = struct.pack("=HH", 4 + len(ip), 9) + ip
    body = struct.pack("=BBH", 2, 0, 0) + attr
    msg = struct.pack("=IHHII", 16 + len(body), 4 << 8, 0, 0, 0) + body
    assert parse_messages(msg, now=0.0) == [Logged(0.0, "", "tcp", "10.244.1.9", "10.96.0.21",
                                                   40000, 80)]
