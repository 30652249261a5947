"""Packets an nftables `log group N` statement hands to userspace (NFLOG over netlink).

The kernel proxy rejects connections to Services without endpoints in the kernel; conntrack
never confirms them, so no conntrack event tells of them. Its reject chain logs each to an
NFLOG group first, and `NflogWatch` reads that group inside the node's netns (a
NETLINK_NETFILTER socket bound to the group, copying the first 64 bytes of each packet, sent at once rather than batched for a second) and
hands the callback the IPv4/TCP-UDP header fields as a plain `LoggedPacket`; no netlink
message leaves this module.
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

from knet.dataplane.nlreader import NetlinkReader

log = logging.getLogger(__name__)

__all__ = ["LoggedPacket", "NflogWatch", "parse_packets"]

NETLINK_NETFILTER, NFNL_SUBSYS_ULOG = 12, 4
NFULNL_MSG_PACKET, NFULNL_MSG_CONFIG = 0, 1
NFULA_PAYLOAD, NFULA_CFG_CMD, NFULA_CFG_MODE, NFULA_CFG_QTHRESH = 9, 1, 2, 5
NFULNL_CFG_CMD_BIND, NFULNL_COPY_PACKET = 1, 2
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4


@dataclass(frozen=True, slots=True)
class LoggedPacket:
    proto: int
    src: str
    sport: int
    dst: str
    dport: int


def _nla(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _config(group: int, attrs: bytes) -> bytes:
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(group)) + attrs
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG,
                       NLM_F_REQUEST | NLM_F_ACK, 0, 0) + body


def _ports(payload: bytes) -> LoggedPacket | None:
    if len(payload) < 20 or payload[0] >> 4 != 4:
        return None
    ihl, proto = (payload[0] & 0xF) * 4, payload[9]
    sport = dport = 0
    if proto in (6, 17) and len(payload) >= ihl + 4:
        sport, dport = struct.unpack_from("!HH", payload, ihl)
    return LoggedPacket(proto, socket.inet_ntoa(payload[12:16]), sport,
                        socket.inet_ntoa(payload[16:20]), dport)


def parse_packets(data: bytes) -> list[LoggedPacket]:
    """The logged packets in one datagram."""
    out: list[LoggedPacket] = []
    off = 0
    while off + 20 <= len(data):
        length, mtype = struct.unpack_from("=IH", data, off)
        if length < 16:
            break
        if mtype == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET:
            pos, end = off + 20, off + length
            while pos + 4 <= end:
                alen, akind = struct.unpack_from("=HH", data, pos)
                if alen < 4:
                    break
                if akind & 0x7FFF == NFULA_PAYLOAD:
                    pkt = _ports(data[pos + 4:pos + alen])
                    if pkt is not None:
                        out.append(pkt)
                pos += (alen + 3) & ~3
        off += (length + 3) & ~3
    return out


class NflogWatch:
    """Packets logged to NFLOG `group` in `netns`, to `callback`, until `stop()`."""

    def __init__(self, netns: str | None, group: int,
                 callback: Callable[[LoggedPacket], None]) -> None:
        self.netns, self.group, self.callback = netns, group, callback
        self.reader = NetlinkReader("nflog", netns, self._open, parse_packets, callback)

    def __repr__(self) -> str:
        return f"<NflogWatch {self.netns or 'host'} group {self.group}>"

    def _open(self) -> socket.socket:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        sock.bind((0, 0))
        sock.settimeout(1.0)
        mode = struct.pack("!IBB", 64, NFULNL_COPY_PACKET, 0)   # copy_range, copy_mode, pad
        for attrs in (_nla(NFULA_CFG_CMD, bytes([NFULNL_CFG_CMD_BIND])),
                      _nla(NFULA_CFG_MODE, mode),
                      _nla(NFULA_CFG_QTHRESH, struct.pack("!I", 1))):  # each packet at once
            sock.send(_config(self.group, attrs))
            ack = sock.recv(4096)
            err = struct.unpack_from("=i", ack, 16)[0] if len(ack) >= 20 else 0
            if err:
                sock.close()
                raise OSError(-err, f"nflog group {self.group} in "
                              f"{self.netns or 'the host netns'}: the kernel refused the "
                              "binding (another listener on the group?)")
        return sock

    def start(self) -> None:
        self.reader.start()

    def stop(self) -> None:
        self.reader.stop()
