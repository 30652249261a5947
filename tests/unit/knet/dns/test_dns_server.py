"""The DNS server on 127.0.0.1 with a free port, queried with dnspython and the real `dig`."""

from __future__ import annotations

import asyncio
import shutil
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from knet.dns.records import ClusterRecords
from knet.dns.server import DnsServer

HOST = "127.0.0.1"


def _objects(records: ClusterRecords) -> None:
    records.on_service_add({"metadata": {"name": "web", "namespace": "default"},
                            "spec": {"clusterIP": "10.96.0.20",
                                     "ports": [{"name": "http", "port": 80}]}})
    records.on_service_add({"metadata": {"name": "big", "namespace": "default"},
                            "spec": {"clusterIP": "None", "ports": [{"name": "p", "port": 1}]}})
    records.on_endpointslice_add({
        "metadata": {"name": "big-1", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "big"}},
        "addressType": "IPv4", "ports": [{"name": "p", "port": 1}],
        "endpoints": [{"addresses": [f"10.244.{i // 200}.{i % 200 + 2}"],
                       "conditions": {"ready": True}} for i in range(100)]})


@pytest.fixture
async def server() -> AsyncIterator[DnsServer]:
    records = ClusterRecords()
    _objects(records)
    srv = DnsServer(records.snapshot, host=HOST, port=0)
    await srv.start()
    yield srv
    await srv.stop()


async def query(srv: DnsServer, name: str, qtype: str, *, tcp: bool = False,
                **kw: Any) -> dns.message.Message:
    q = dns.message.make_query(name, qtype, **kw)
    fn = dns.asyncquery.tcp if tcp else dns.asyncquery.udp
    return await fn(q, HOST, port=srv.port, timeout=2)


async def dig(srv: DnsServer, *args: str) -> str:
    if shutil.which("dig") is None:
        pytest.fail("dig is not installed (apt package dnsutils, see scripts/install.sh)")
    proc = await asyncio.create_subprocess_exec(
        "dig", f"@{HOST}", "-p", str(srv.port), "+time=2", "+tries=1", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 10)
    return out.decode()


async def test_a_record_over_udp_and_tcp(server: DnsServer) -> None:
    for tcp in (False, True):
        r = await query(server, "web.default.svc.cluster.local", "A", tcp=tcp)
        assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
        assert [(rr.ttl, [x.to_text() for x in rr]) for rr in r.answer] == [(5, ["10.96.0.20"])]


async def test_answers_echo_the_question_case_from_the_cache(server: DnsServer) -> None:
    await query(server, "web.default.svc.cluster.local", "A")
    r = await query(server, "WEB.Default.SVC.cluster.local", "A")
    assert r.question[0].name.to_text() == "WEB.Default.SVC.cluster.local."
    assert [x.to_text() for x in r.answer[0]] == ["10.96.0.20"]


async def test_dig_a_srv_ptr(server: DnsServer) -> None:
    assert (await dig(server, "+short", "web.default.svc.cluster.local")).split() == ["10.96.0.20"]
    srv = await dig(server, "+short", "SRV", "_http._tcp.web.default.svc.cluster.local")
    assert srv.split() == ["0", "100", "80", "web.default.svc.cluster.local."]
    assert (await dig(server, "+short", "-x", "10.96.0.20")).split() == [
        "web.default.svc.cluster.local."]


async def test_dig_nxdomain_has_soa(server: DnsServer) -> None:
    out = await dig(server, "nope.default.svc.cluster.local")
    assert "status: NXDOMAIN" in out
    assert "SOA\tns.dns.cluster.local. hostmaster.cluster.local." in out


async def test_nodata_for_other_type(server: DnsServer) -> None:
    r = await query(server, "web.default.svc.cluster.local", "AAAA")
    assert (r.rcode(), r.answer) == (dns.rcode.NOERROR, [])
    assert r.authority[0].rdtype == dns.rdatatype.SOA


async def test_outside_names_nxdomain_without_upstream(server: DnsServer) -> None:
    r = await query(server, "example.com", "A")
    assert r.rcode() == dns.rcode.NXDOMAIN


async def test_truncation_then_tcp_retry_with_dig(server: DnsServer) -> None:
    r = await query(server, "big.default.svc.cluster.local", "A", use_edns=False)
    assert r.flags & dns.flags.TC and r.answer == []
    out = await dig(server, "big.default.svc.cluster.local")
    assert "Truncated, retrying in TCP mode." in out
    assert "ANSWER: 100," in out
    r = await query(server, "big.default.svc.cluster.local", "A", tcp=True)
    assert len(list(r.answer[0])) == 100


async def test_edns_payload_is_honoured(server: DnsServer) -> None:
    r = await query(server, "big.default.svc.cluster.local", "A", use_edns=0, payload=4096)
    assert not r.flags & dns.flags.TC and len(list(r.answer[0])) == 100
    assert r.edns == 0


def _raw_udp(port: int, payload: bytes, timeout: float = 1.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(payload, (HOST, port))
        try:
            return s.recv(65535)
        except TimeoutError:
            return None


async def test_garbage_is_dropped_or_formerr_and_others_still_served(server: DnsServer) -> None:
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, _raw_udp, server.port, b"\x01\x02\x03", 0.3) is None
    junk = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\xff\xff"
    resp = await loop.run_in_executor(None, _raw_udp, server.port, junk)
    assert resp is not None and resp[:2] == b"\x12\x34"
    assert resp[3] & 0x0F == dns.rcode.FORMERR
    r = await query(server, "web.default.svc.cluster.local", "A")
    assert r.rcode() == dns.rcode.NOERROR
    assert any(f.rcode == "FORMERR" for f in server.records())


async def test_300_byte_name_is_formerr(server: DnsServer) -> None:
    labels = b"".join(b"\x3f" + b"a" * 63 for _ in range(5))  # 320 bytes of name
    packet = b"\xbe\xef\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + labels + b"\x00\x00\x01\x00\x01"
    loop = asyncio.get_running_loop()
    resp = await loop.run_in_executor(None, _raw_udp, server.port, packet)
    assert resp is not None and resp[:2] == b"\xbe\xef" and resp[3] & 0x0F == dns.rcode.FORMERR
    # and over TCP the connection keeps serving the next query
    reader, writer = await asyncio.open_connection(HOST, server.port)
    good = dns.message.make_query("web.default.svc.cluster.local", "A").to_wire()
    for p in (packet, good):
        writer.write(struct.pack("!H", len(p)) + p)
    answers = []
    for _ in range(2):
        size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 2))[0]
        answers.append(await reader.readexactly(size))
    writer.close()
    assert answers[0][3] & 0x0F == dns.rcode.FORMERR
    assert dns.message.from_wire(answers[1]).answer[0][0].to_text() == "10.96.0.20"


async def test_query_log_records_and_follow(server: DnsServer) -> None:
    follower = server.follow()
    nxt = asyncio.ensure_future(follower.__anext__())
    await asyncio.sleep(0)
    await query(server, "web.default.svc.cluster.local", "A")
    flow = await asyncio.wait_for(nxt, 2)
    assert (flow.qname, flow.qtype, flow.rcode, flow.answer, flow.proto) == (
        "web.default.svc.cluster.local.", "A", "NOERROR", "A 10.96.0.20", "udp")
    assert flow.client.startswith("127.0.0.1:")
    await follower.aclose()
    await query(server, "nope.default.svc.cluster.local", "A")
    last = server.records()[-1]
    assert (last.qname, last.rcode) == ("nope.default.svc.cluster.local.", "NXDOMAIN")


async def test_records_ring_is_bounded() -> None:
    srv = DnsServer(ClusterRecords().snapshot, host=HOST, port=0, log_size=3)
    await srv.start()
    try:
        for i in range(5):
            await query(srv, f"n{i}.default.svc.cluster.local", "A")
        assert [f.qname.split(".")[0] for f in srv.records()] == ["n2", "n3", "n4"]
    finally:
        await srv.stop()


async def test_updates_are_served_without_restart() -> None:
    records = ClusterRecords()
    srv = DnsServer(records.snapshot, host=HOST, port=0)
    await srv.start()
    try:
        assert (await query(srv, "late.default.svc.cluster.local", "A")).rcode() == \
            dns.rcode.NXDOMAIN
        records.on_service_add({"metadata": {"name": "late", "namespace": "default"},
                                "spec": {"clusterIP": "10.96.0.77"}})
        r = await query(srv, "late.default.svc.cluster.local", "A")
        assert r.answer[0][0].to_text() == "10.96.0.77"
    finally:
        await srv.stop()


class _FakeUpstream(asyncio.DatagramProtocol):
    """A loopback resolver that answers every A query with 192.0.2.1 (or stays silent)."""

    def __init__(self, *, silent: bool = False) -> None:
        self.silent = silent
        self.seen: list[str] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        q = dns.message.from_wire(data)
        self.seen.append(q.question[0].name.to_text())
        if self.silent:
            return
        r = dns.message.make_response(q)
        r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A", "192.0.2.1"))
        self.transport.sendto(r.to_wire(), addr)


async def _with_upstream(silent: bool) -> tuple[DnsServer, _FakeUpstream, Any]:
    loop = asyncio.get_running_loop()
    up = _FakeUpstream(silent=silent)
    transport, _ = await loop.create_datagram_endpoint(lambda: up, local_addr=(HOST, 0))
    records = ClusterRecords()
    _objects(records)
    srv = DnsServer(records.snapshot, host=HOST, port=0,
                    upstream=(HOST, transport.get_extra_info("sockname")[1]),
                    upstream_timeout=0.5)
    await srv.start()
    return srv, up, transport


async def test_outside_names_are_forwarded_to_the_upstream() -> None:
    srv, up, transport = await _with_upstream(silent=False)
    try:
        r = await query(srv, "example.com", "A")
        assert [x.to_text() for x in r.answer[0]] == ["192.0.2.1"]
        r = await query(srv, "web.default.svc.cluster.local", "A")  # ours: not forwarded
        assert [x.to_text() for x in r.answer[0]] == ["10.96.0.20"]
        assert up.seen == ["example.com."]
        assert srv.records()[-2].answer.endswith(f"via {HOST}:{up.transport.get_extra_info('sockname')[1]}")
    finally:
        await srv.stop()
        transport.close()


async def test_silent_upstream_gives_servfail_after_the_timeout() -> None:
    srv, up, transport = await _with_upstream(silent=True)
    try:
        r = await query(srv, "example.com", "A")
        assert r.rcode() == dns.rcode.SERVFAIL
        assert up.seen == ["example.com."]
        r = await query(srv, "web.default.svc.cluster.local", "A")
        assert r.rcode() == dns.rcode.NOERROR
    finally:
        await srv.stop()
        transport.close()
