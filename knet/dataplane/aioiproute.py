"""`KnetIPRoute`: pyroute2's AsyncIPRoute on any asyncio loop, uvloop included.

AsyncIPRoute receives through `loop.create_datagram_endpoint`, which uvloop refuses for
AF_NETLINK sockets ("invalid family 16"). knet's daemons run on uvloop, so this subclass
receives with `loop.add_reader` on the socket instead (what asyncio's own datagram
transport does inside) and hands datagrams to pyroute2's protocol unchanged. Requests are
sent by pyroute2 on the socket directly, as before. `send_batch()` sends several prebuilt
requests in one datagram: the hot path of a pod sandbox is one round trip.
"""

from __future__ import annotations

import asyncio
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

from pyroute2 import AsyncIPRoute  # type: ignore[import-untyped]
from pyroute2.netlink import (  # type: ignore[import-untyped]
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
)
from pyroute2.netlink.core import CoreDatagramProtocol  # type: ignore[import-untyped]
from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]
from pyroute2.netlink.rtnl import (  # type: ignore[import-untyped]
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
)
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg  # type: ignore[import-untyped]
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg  # type: ignore[import-untyped]
from pyroute2.netlink.rtnl.rtmsg import rtmsg  # type: ignore[import-untyped]

__all__ = ["KnetIPRoute", "Msg", "RawRtnl", "addr_replace", "bridge_port_hairpin", "default_route_replace", "link_up", "send_and_ack"]

Msg = Any             # a pyroute2 netlink message (pyroute2 is untyped), ready to send
_REQ = NLM_F_REQUEST | NLM_F_ACK
_REPLACE = _REQ | NLM_F_CREATE | NLM_F_REPLACE
IFF_UP = 1
RT_TABLE_MAIN, RTPROT_STATIC, RTN_UNICAST = 254, 4, 1


def _msg(cls: type, mtype: int, flags: int, fields: dict[str, int],
         attrs: list[tuple[str, object]]) -> Msg:
    m = cls()
    for k, v in fields.items():
        m[k] = v
    m["attrs"] = attrs
    m["header"]["type"] = mtype
    m["header"]["flags"] = flags
    return m


def link_up(index: int) -> Msg:
    """`ip link set <index> up`"""
    return _msg(ifinfmsg, RTM_NEWLINK, _REQ, {"index": index, "flags": IFF_UP,
                                                "change": IFF_UP}, [])


def veth_add(ifname: str, *, master: int, peer_netns_fd: int, peer_mac: str,
             mtu: int = 1500) -> Msg:
    """`ip link add ifname master <master> up type veth peer name eth0 netns <fd> address
    <mac>`: the peer is born in its netns (moving it later costs ~21 ms in the kernel)."""
    peer = {"attrs": [("IFLA_IFNAME", "eth0"), ("IFLA_NET_NS_FD", peer_netns_fd),
                      ("IFLA_ADDRESS", peer_mac), ("IFLA_MTU", mtu)]}
    info = {"attrs": [("IFLA_INFO_KIND", "veth"),
                      ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", peer)]})]}
    return _msg(ifinfmsg, RTM_NEWLINK, _REQ | NLM_F_CREATE | NLM_F_EXCL,
                {"flags": IFF_UP, "change": IFF_UP},
                [("IFLA_IFNAME", ifname), ("IFLA_MASTER", master), ("IFLA_MTU", mtu),
                 ("IFLA_LINKINFO", info)])


def bridge_port_hairpin(ifname: str) -> Msg:
    """`ip link set ifname type bridge_slave hairpin on`: a frame may leave by the port it came
    in on, which a pod reaching itself through a Service DNATed on the bridge (br_netfilter)
    needs, as kubelet's hairpin-veth mode and the CNI bridge plugin's hairpinMode do."""
    info = {"attrs": [("IFLA_INFO_SLAVE_KIND", "bridge"),
                      ("IFLA_INFO_SLAVE_DATA", {"attrs": [("IFLA_BRPORT_MODE", 1)]})]}
    return _msg(ifinfmsg, RTM_NEWLINK, _REQ, {}, [("IFLA_IFNAME", ifname),
                                                  ("IFLA_LINKINFO", info)])


def addr_replace(index: int, ip: str, prefixlen: int) -> Msg:
    """`ip addr replace ip/prefixlen dev <index>`"""
    return _msg(ifaddrmsg, RTM_NEWADDR, _REPLACE,
                {"family": socket.AF_INET, "prefixlen": prefixlen, "index": index},
                [("IFA_LOCAL", ip), ("IFA_ADDRESS", ip)])


def default_route_replace(gateway: str) -> Msg:
    """`ip route replace default via gateway`"""
    return _msg(rtmsg, RTM_NEWROUTE, _REPLACE,
                {"family": socket.AF_INET, "dst_len": 0, "table": RT_TABLE_MAIN,
                 "proto": RTPROT_STATIC, "scope": 0, "type": RTN_UNICAST},
                [("RTA_GATEWAY", gateway)])

RECV_SIZE = 1 << 20
ACK_TIMEOUT = 5.0
NLMSG_ERROR = 2
NETLINK_ROUTE = 0


class _ReaderTransport(asyncio.DatagramTransport):
    """The receive half of a datagram transport over a netlink socket."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 protocol: asyncio.DatagramProtocol) -> None:
        super().__init__()
        self._loop, self._sock, self._protocol = loop, sock, protocol
        self._closed = False
        sock.setblocking(False)
        loop.add_reader(sock.fileno(), self._read)
        protocol.connection_made(self)

    def _read(self) -> None:
        while not self._closed:
            try:
                data, addr = self._sock.recvfrom(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._protocol.error_received(exc)
                return
            self._protocol.datagram_received(data, addr)

    def is_closing(self) -> bool:
        return self._closed

    def abort(self) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._loop.remove_reader(self._sock.fileno())
        except (ValueError, OSError, RuntimeError):
            pass                  # socket or loop already gone
        self._loop.call_soon(self._protocol.connection_lost, None)


class KnetIPRoute(AsyncIPRoute):  # type: ignore[misc]
    """AsyncIPRoute whose receive path works on uvloop too. Open the socket (`.socket`)
    in the wanted netns, then `await setup_endpoint()` from the loop's thread."""

    async def setup_endpoint(self) -> None:
        if getattr(self.local, "transport", None) is not None:
            return
        protocol = CoreDatagramProtocol(self.connection_lost, self.enqueue, self._error_event,
                                        self.status)
        transport = _ReaderTransport(self.event_loop, self.socket, protocol)
        self.local.transport, self.local.protocol = transport, protocol

    async def send_batch(self, msgs: list[Msg]) -> None:
        """Send `msgs` in one datagram and wait for their acks (see `send_and_ack`);
        datagrams answering someone else's request on this socket go to pyroute2."""
        seqs = [self.addr_pool.alloc() for _ in msgs]
        try:
            send_and_ack(self.socket, msgs, seqs,
                         foreign=lambda d: self.local.protocol.datagram_received(d, (0, 0)))
        finally:
            for seq in seqs:
                self.addr_pool.free(seq, ban=0xFF)


class RawRtnl:
    """A bare NETLINK_ROUTE socket for a one-off batch (a new pod's netns): none of
    pyroute2's per-socket machinery (transport, queues) to set up and tear down."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  NETLINK_ROUTE)
        self.sock.setblocking(False)
        self.sock.bind((0, 0))
        self._seq = 0

    def send_batch(self, msgs: list[Msg]) -> None:
        seqs = list(range(self._seq + 1, self._seq + 1 + len(msgs)))
        self._seq += len(msgs)
        send_and_ack(self.sock, msgs, seqs, foreign=lambda d: None)

    def close(self) -> None:
        self.sock.close()


def send_and_ack(sock: socket.socket, msgs: list[Msg], seqs: list[int], *,
                 foreign: Callable[[bytes], None]) -> None:
    """Send `msgs` in one datagram and collect their acks; raise NetlinkError for the first
    that failed. RTNL runs requests inside sendmsg(), so the acks are already queued when
    send() returns: they are read right here, without a trip through the event loop."""
    data = b""
    for m, seq in zip(msgs, seqs, strict=True):
        m["header"]["sequence_number"] = seq
        m["header"]["pid"] = 0
        m.encode()
        data += m.data
    sock.send(data)
    pending, first_error = set(seqs), 0
    deadline = time.monotonic() + ACK_TIMEOUT
    while pending:
        try:
            got = sock.recv(RECV_SIZE)
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([sock], [], [], left)[0]:
                raise TimeoutError(f"netlink: no ack within {ACK_TIMEOUT} s") from None
            continue
        ours = False
        for mtype, seq, err in _headers(got):
            if seq in pending:
                ours = True
                if mtype == NLMSG_ERROR:
                    pending.discard(seq)
                    first_error = first_error or -err
        if not ours:
            foreign(got)
    if first_error:
        raise NetlinkError(first_error)


def _headers(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(type, seq, error) of each netlink message in a datagram (error: NLMSG_ERROR only)."""
    off = 0
    while off + 16 <= len(data):
        length, mtype, _flags, seq, _pid = struct.unpack_from("IHHII", data, off)
        err = struct.unpack_from("i", data, off + 16)[0] if mtype == NLMSG_ERROR else 0
        yield mtype, seq, err
        off += max((length + 3) & ~3, 16)
