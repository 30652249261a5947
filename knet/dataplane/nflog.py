"""Packets logged by nftables' `log group N` rules, read over NFLOG netlink in a netns.

A raw AF_NETLINK / NETLINK_NETFILTER socket made inside the netns (thread-local setns), bound
to one NFLOG group with the first bytes of each packet copied (enough for the IP and L4
headers); each message becomes a `Logged` (prefix, addresses, protocol, ports). pyroute2
0.9 has no NFLOG support, and the protocol is four attributes, so it is spoken here
directly. `NflogReader.start(callback)` reads on the event loop (add_reader), never blocks.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from knet.dataplane import nsutil

__all__ = ["Logged", "NflogReader", "parse_messages"]

log = logging.getLogger(__name__)

NETLINK_NETFILTER = 12
NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET, NFULNL_MSG_CONFIG = 0, 1
NFULA_CFG_CMD, NFULA_CFG_MODE, NFULA_CFG_TIMEOUT, NFULA_CFG_QTHRESH = 1, 2, 4, 5
NFULNL_CFG_CMD_BIND = 1
NFULNL_COPY_PACKET = 2
NFULA_PAYLOAD, NFULA_PREFIX = 9, 10
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
COPY_RANGE = 96
_PROTOS = {6: "tcp", 17: "udp", 132: "sctp", 1: "icmp", 58: "icmpv6"}


@dataclass(frozen=True)
class Logged:
    time: float
    prefix: str
    protocol: str
    src: str
    dst: str
    sport: int = 0
    dport: int = 0


def _attrs(data: bytes) -> dict[int, bytes]:
    out, off = {}, 0
    while off + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, off)
        if length < 4:
            break
        out[kind & 0x3FFF] = data[off + 4:off + length]
        off += (length + 3) & ~3
    return out


def _packet(prefix: str, payload: bytes, now: float) -> Logged | None:
    if not payload:
        return None
    version = payload[0] >> 4
    if version == 4 and len(payload) >= 20:
        ihl = (payload[0] & 0x0F) * 4
        proto = payload[9]
        src, dst = str(ipaddress.IPv4Address(payload[12:16])), str(ipaddress.IPv4Address(payload[16:20]))
        l4 = payload[ihl:]
    elif version == 6 and len(payload) >= 40:
        proto = payload[6]
        src, dst = str(ipaddress.IPv6Address(payload[8:24])), str(ipaddress.IPv6Address(payload[24:40]))
        l4 = payload[40:]
    else:
        return None
    name = _PROTOS.get(proto, str(proto))
    sport = dport = 0
    if name in ("tcp", "udp", "sctp") and len(l4) >= 4:
        sport, dport = struct.unpack_from("!HH", l4)
    return Logged(now, prefix, name, src, dst, sport, dport)


def parse_messages(data: bytes, now: float | None = None) -> list[Logged]:
    """Every NFLOG packet message in one netlink datagram."""
    now = time.time() if now is None else now
    out, off = [], 0
    while off + 16 <= len(data):
        length, kind, _flags, _seq, _pid = struct.unpack_from("=IHHII", data, off)
        if length < 16:
            break
        if kind == (NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_PACKET):
            attrs = _attrs(data[off + 20:off + length])         # after nlmsghdr + nfgenmsg
            prefix = attrs.get(NFULA_PREFIX, b"").split(b"\0", 1)[0].decode(errors="replace")
            pkt = _packet(prefix, attrs.get(NFULA_PAYLOAD, b""), now)
            if pkt is not None:
                out.append(pkt)
        off += (length + 3) & ~3
    return out


def _config(group: int, seq: int, attrs: list[tuple[int, bytes]]) -> bytes:
    body = struct.pack("!BBH", socket.AF_UNSPEC, 0, group)     # nfgenmsg, res_id = group
    for kind, value in attrs:
        attr = struct.pack("=HH", 4 + len(value), kind) + value
        body += attr + b"\0" * (-len(attr) % 4)
    head = struct.pack("=IHHII", 16 + len(body), NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_CONFIG,
                       NLM_F_REQUEST | NLM_F_ACK, seq, 0)
    return head + body


class NflogReader:
    """Reads NFLOG group `group` in netns `netns` (None: this one)."""

    def __init__(self, netns: str | None, group: int) -> None:
        self.netns, self.group = netns, group
        self._sock: socket.socket | None = None

    def __repr__(self) -> str:
        return f"<NflogReader group {self.group} netns {self.netns or '(own)'}>"

    def _open(self) -> socket.socket:
        ctx = nsutil.in_netns(self.netns) if self.netns else None
        if ctx is not None:
            with ctx:
                sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        else:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.bind((0, 0))
            sock.settimeout(2.0)
            for seq, (kind, value) in enumerate((
                    (NFULA_CFG_CMD, struct.pack("B", NFULNL_CFG_CMD_BIND)),
                    (NFULA_CFG_MODE, struct.pack("!IBB", COPY_RANGE, NFULNL_COPY_PACKET, 0)),
                    # each packet at once (the kernel's default batches 100 or 1 s)
                    (NFULA_CFG_QTHRESH, struct.pack("!I", 1)),
                    (NFULA_CFG_TIMEOUT, struct.pack("!I", 1)))):
                sock.send(_config(self.group, seq + 1, [(kind, value)]))
                self._ack(sock)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    def _ack(self, sock: socket.socket) -> None:
        data = sock.recv(65536)
        _, kind = struct.unpack_from("=IH", data)
        if kind == NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", data, 16)
            if code:
                raise OSError(-code, f"nflog group {self.group} in netns {self.netns}: "
                              "bind refused (another listener on this group? is "
                              "nfnetlink_log available?)")

    def start(self, callback: Callable[[Logged], None]) -> None:
        """Call `callback` for each logged packet, from the running loop, until `close`."""
        self._sock = sock = self._open()

        def readable() -> None:
            while True:
                try:
                    data = sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as exc:     # ENOBUFS: the kernel dropped logs; keep reading
                    log.warning("%r: %s (some drops were not recorded)", self, exc)
                    return
                for pkt in parse_messages(data):
                    callback(pkt)

        asyncio.get_running_loop().add_reader(sock.fileno(), readable)

    def close(self) -> None:
        if self._sock is not None:
            try:
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            except RuntimeError:
                pass
            self._sock.close()
            self._sock = None
