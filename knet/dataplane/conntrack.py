"""Conntrack events of one netns over netlink (ctnetlink), for flow records of the kernel proxy.

`ConntrackWatch` opens a NETLINK_NETFILTER socket inside the netns, subscribed to the NEW,
UPDATE and DESTROY groups, reads it on the event loop (`loop.add_reader`: works on uvloop,
where pyroute2's datagram endpoint does not) and hands each message, decoded by pyroute2's
`nfct_msg`, to a callback as a plain `CtEvent`: no netlink message leaves this module. The
kernel sends byte counters only with DESTROY, which for TCP comes two minutes after the close
(TIME_WAIT), so `counters(ev)` asks for one entry's counters (a ctnetlink GET) when the
connection closes. `delete(match)` removes the entries a predicate picks (a dump, then one
DELETE each), which the kernel proxy needs for UDP: an entry DNATed to an endpoint that is
gone would keep a client's flow on it for as long as the client keeps sending.
Accounting (`nf_conntrack_acct`) is switched on in the netns at start.
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

from pyroute2.netlink.nfnetlink.nfctsocket import (  # type: ignore[import-untyped]
    NFCTAttrTuple,
    nfct_msg,
)

from knet.dataplane.nlreader import NetlinkReader

log = logging.getLogger(__name__)

__all__ = ["TCP_STATES", "ConntrackWatch", "CtEvent"]

NETLINK_NETFILTER = 12
GROUPS = 0b111                       # NFNLGRP_CONNTRACK_NEW | _UPDATE | _DESTROY
NFNL_SUBSYS_CTNETLINK, CT_NEW, CT_GET, CT_DELETE = 1, 0, 1, 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP, NLM_F_CREATE = 0x1, 0x4, 0x300, 0x400
NLMSG_ERROR, NLMSG_DONE = 2, 3
IPS_DST_NAT, IPS_SRC_NAT = 0x20, 0x10
TCP_STATES = {1: "SYN_SENT", 2: "SYN_RECV", 3: "ESTABLISHED", 4: "FIN_WAIT", 5: "CLOSE_WAIT",
              6: "LAST_ACK", 7: "TIME_WAIT", 8: "CLOSE", 9: "SYN_SENT2"}


@dataclass(frozen=True, slots=True)
class CtEvent:
    kind: str                 # new | update | destroy
    id: int
    proto: int                # 6 tcp, 17 udp
    src: str                  # the original direction, as the client sent it
    sport: int
    dst: str
    dport: int
    reply_src: str            # who answers: the endpoint after DNAT
    reply_sport: int
    reply_dst: str            # where answers go: the client, or the node after SNAT
    status: int = 0
    tcp_state: str = ""
    bytes_orig: int | None = None
    bytes_reply: int | None = None

    @property
    def dnat(self) -> bool:
        return bool(self.status & IPS_DST_NAT)


def _tuple(t: object) -> tuple[str, int, str, int, int]:
    ip, pr = t.get_attr("CTA_TUPLE_IP"), t.get_attr("CTA_TUPLE_PROTO")  # type: ignore[attr-defined]
    return (ip.get_attr("CTA_IP_V4_SRC") or "", pr.get_attr("CTA_PROTO_SRC_PORT") or 0,
            ip.get_attr("CTA_IP_V4_DST") or "", pr.get_attr("CTA_PROTO_DST_PORT") or 0,
            pr.get_attr("CTA_PROTO_NUM") or 0)


def parse(data: bytes) -> list[CtEvent]:
    """The conntrack messages in one datagram (others, e.g. errors, skipped)."""
    out: list[CtEvent] = []
    off = 0
    while off + 16 <= len(data):
        length, mtype, flags = struct.unpack_from("=IHH", data, off)
        if length < 16:
            break
        if mtype >> 8 == NFNL_SUBSYS_CTNETLINK and mtype & 0xFF in (CT_NEW, CT_DELETE):
            m = nfct_msg(data[off:off + length])
            m.decode()
            orig, reply = m.get_attr("CTA_TUPLE_ORIG"), m.get_attr("CTA_TUPLE_REPLY")
            if orig is not None and reply is not None:
                src, sport, dst, dport, proto = _tuple(orig)
                rsrc, rsport, rdst, _rd, _p = _tuple(reply)
                kind = "destroy" if mtype & 0xFF == CT_DELETE else \
                    "new" if flags & NLM_F_CREATE else "update"
                state = ""
                pinfo = m.get_attr("CTA_PROTOINFO")
                tcp = pinfo.get_attr("CTA_PROTOINFO_TCP") if pinfo is not None else None
                if tcp is not None:
                    state = TCP_STATES.get(tcp.get_attr("CTA_PROTOINFO_TCP_STATE"), "")
                co, cr = m.get_attr("CTA_COUNTERS_ORIG"), m.get_attr("CTA_COUNTERS_REPLY")
                out.append(CtEvent(
                    kind, m.get_attr("CTA_ID") or 0, proto, src, sport, dst, dport, rsrc, rsport,
                    rdst, m.get_attr("CTA_STATUS") or 0, state,
                    co.get_attr("CTA_COUNTERS_BYTES") if co is not None else None,
                    cr.get_attr("CTA_COUNTERS_BYTES") if cr is not None else None))
        off += (length + 3) & ~3
    return out


def _has_type(data: bytes, mtype: int) -> bool:
    off = 0
    while off + 16 <= len(data):
        length, t = struct.unpack_from("=IH", data, off)
        if t == mtype:
            return True
        if length < 16:
            return False
        off += (length + 3) & ~3
    return False


class ConntrackWatch:
    """Conntrack events of `netns` to `callback`, until `stop()`."""

    def __init__(self, netns: str | None, callback: Callable[[CtEvent], None]) -> None:
        self.netns, self.callback = netns, callback
        self._query: socket.socket | None = None
        self.reader = NetlinkReader("conntrack", netns, self._open, parse, callback)

    def __repr__(self) -> str:
        return f"<ConntrackWatch {self.netns or 'host'} {'on' if self._query else 'off'}>"

    def _open(self) -> socket.socket:
        """The events socket; the query socket and byte accounting on the way (same netns)."""
        events = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        events.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        events.bind((0, GROUPS))
        self._query = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self._query.bind((0, 0))
        self._query.settimeout(0.5)
        try:
            with open("/proc/sys/net/netfilter/nf_conntrack_acct", "w") as f:
                f.write("1")
        except OSError as exc:
            log.warning("conntrack %s: cannot switch on byte accounting (%s); flows say 0 "
                        "bytes", self.netns or "host", exc)
        return events

    def start(self) -> None:
        self.reader.start()

    def _request(self, mtype: int, flags: int, ev: CtEvent | None = None) -> bytes:
        msg = nfct_msg()
        msg["nfgen_family"] = socket.AF_INET
        msg["attrs"] = [] if ev is None else [("CTA_TUPLE_ORIG", {"attrs": NFCTAttrTuple(
            family=socket.AF_INET, proto=ev.proto, saddr=ev.src, daddr=ev.dst,
            sport=ev.sport, dport=ev.dport).attrs()})]
        msg["header"]["type"] = (NFNL_SUBSYS_CTNETLINK << 8) | mtype
        msg["header"]["flags"] = flags
        msg.encode()
        return bytes(msg.data)

    def entries(self) -> list[CtEvent]:
        """Every conntrack entry of the netns now (kind "update")."""
        if self._query is None:
            return []
        self._query.send(self._request(CT_GET, NLM_F_REQUEST | NLM_F_DUMP))
        out: list[CtEvent] = []
        while True:
            data = self._query.recv(1 << 20)
            out += parse(data)
            if _has_type(data, NLMSG_DONE) or _has_type(data, NLMSG_ERROR):
                return out

    def delete(self, match: Callable[[CtEvent], bool]) -> int:
        """Delete the entries `match` picks; how many went (one gone meanwhile is not counted)."""
        if self._query is None:
            return 0
        gone = 0
        for ev in [e for e in self.entries() if match(e)]:
            self._query.send(self._request(CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, ev))
            data = self._query.recv(1 << 16)
            if len(data) >= 20 and struct.unpack_from("=H", data, 4)[0] == NLMSG_ERROR \
                    and struct.unpack_from("=i", data, 16)[0] == 0:
                gone += 1
        return gone

    def counters(self, ev: CtEvent) -> tuple[int, int] | None:
        """(bytes client->server, bytes server->client) of ev's entry now, None if gone."""
        if self._query is None:
            return None
        try:
            self._query.send(self._request(CT_GET, NLM_F_REQUEST, ev))
            got = [e for e in parse(self._query.recv(1 << 16)) if e.id == ev.id]
        except OSError:
            return None
        if not got or got[0].bytes_orig is None:
            return None
        return got[0].bytes_orig, got[0].bytes_reply or 0

    def stop(self) -> None:
        self.reader.stop()
        if self._query is not None:
            self._query.close()
            self._query = None
