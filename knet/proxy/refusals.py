"""Refusing like kube-proxy's REJECT and DROP rules, and seeing it happen.

REJECT (a service port with no usable endpoint anywhere): the proxier does not listen on it
at all. The ClusterIP stays on the node, so the node's own stack answers a SYN with a RST
(curl: exit 7, connection refused) and a UDP datagram with ICMP port unreachable (nc:
ECONNREFUSED), which is what kube-proxy's `reject` rules send; a flood costs no fd and no
accept. DROP (a Local traffic policy with endpoints only on other nodes): the listener stays
and carries a classic BPF socket filter returning 0, so the kernel discards SYNs and
datagrams before any connection exists, like a DROP rule.
Flow records: `RefusalWatch` reads those SYNs and datagrams from raw IP sockets in the node's
netns whose BPF filter passes only the refused (ip, port) pairs (TCP: SYN without ACK), and
records REFUSED or DROPPED flows; with nothing refused it has no socket open, so the data
path pays nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import socket
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from knet.proxy.config import ServicePort
from knet.proxy.flows import DROPPED, REFUSED, FlowRecord
from knet.proxy.topology import DROP

log = logging.getLogger(__name__)

__all__ = [
    "RefusalWatch",
    "Refused",
    "attach_drop_all",
    "bpf_program",
    "detach_filter",
    "listener_fileno",
    "parse_packet",
]

SO_ATTACH_FILTER, SO_DETACH_FILTER = 26, 27
MAX_MATCHED = 60          # (ip, port) pairs one program compares (jump offsets are 8 bits)
SNAP = 64                 # bytes of each packet the raw socket keeps (IP + L4 headers)
DEDUP_SECONDS = 5.0       # a client's retransmitted SYN (DROP) is one refused flow
RefuseKey = tuple[str, str, int]  # (protocol, ip, port)

_LDX_IHL, _LD_W_ABS, _LD_H_IND, _LD_B_IND = 0xB1, 0x20, 0x48, 0x50
_AND_K, _JEQ_K, _RET_K = 0x54, 0x15, 0x06


class SocketFactory(Protocol):
    """SocketMaker's part used here: sockets made in the node's netns."""
    def new(self, kind: int = ..., family: int = ..., *, proto: int = 0) -> socket.socket: ...


@dataclass(frozen=True, slots=True)
class Refused:
    sp: ServicePort
    verdict: str  # topology.REJECT | topology.DROP


def _ins(code: int, jt: int = 0, jf: int = 0, k: int = 0) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k & 0xFFFFFFFF)


def bpf_program(pairs: list[tuple[str, int]], *, tcp_syn: bool) -> bytes:
    """A classic BPF program over an IPv4 packet (raw socket view) passing SNAP bytes of
    packets to one of `pairs` (dst ip, dst port), only TCP SYNs if `tcp_syn`; empty `pairs`
    passes nothing. More than MAX_MATCHED pairs: all pass (the reader checks in Python)."""
    ops: list[tuple[int, int | str, int | str, int]] = [(_LDX_IHL, 0, 0, 0)]
    if tcp_syn:  # flags & (SYN|ACK) == SYN
        ops += [(_LD_B_IND, 0, 0, 13), (_AND_K, 0, 0, 0x12), (_JEQ_K, 0, "drop", 0x02)]
    if len(pairs) > MAX_MATCHED:
        ops.append((_JEQ_K, "accept", "accept", 0))
    else:
        for ip, port in pairs:
            ops += [(_LD_W_ABS, 0, 0, 16),
                    (_JEQ_K, 0, 2, struct.unpack("!I", socket.inet_aton(ip))[0]),
                    (_LD_H_IND, 0, 0, 2), (_JEQ_K, "accept", 0, port)]
    drop, accept = len(ops), len(ops) + 1
    ops += [(_RET_K, 0, 0, 0), (_RET_K, 0, 0, SNAP)]

    def off(at: int, target: int | str) -> int:
        return target if isinstance(target, int) else (
            drop if target == "drop" else accept) - at - 1

    return b"".join(_ins(code, off(i, jt), off(i, jf), k)
                    for i, (code, jt, jf, k) in enumerate(ops))


def _set_filter(fd: int, program: bytes) -> None:
    buf = ctypes.create_string_buffer(program)
    fprog = struct.pack("HxxxxxxQ", len(program) // 8, ctypes.addressof(buf))
    sock = socket.socket(fileno=os.dup(fd))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    finally:
        sock.close()


def attach_drop_all(fd: int) -> None:
    """Every packet to this socket is discarded by the kernel (a DROP rule's effect)."""
    _set_filter(fd, _ins(_RET_K, k=0))


def detach_filter(fd: int) -> None:
    sock = socket.socket(fileno=os.dup(fd))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
    except OSError:
        pass  # no filter attached
    finally:
        sock.close()


def listener_fileno(listener: object) -> int | None:
    """The listening socket's fd of a TcpListener/HttpListener (its server) or UdpListener."""
    server = getattr(listener, "_server", None)
    if server is not None and server.sockets:
        return int(server.sockets[0].fileno())
    transport = getattr(listener, "transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    return int(sock.fileno()) if sock is not None else None


def parse_packet(data: bytes) -> tuple[str, int, str, int] | None:
    """(src ip, src port, dst ip, dst port) of an IPv4 TCP/UDP packet, None if too short."""
    if len(data) < 20:
        return None
    ihl = (data[0] & 0x0F) * 4
    if len(data) < ihl + 4:
        return None
    sport, dport = struct.unpack_from("!HH", data, ihl)
    return socket.inet_ntoa(data[12:16]), sport, socket.inet_ntoa(data[16:20]), dport


class RefusalWatch:
    """Records a flow for each connection/datagram the kernel refuses or drops for a service
    port (`update()` says which); `emit` is the proxy context's recorder."""

    def __init__(self, *, node: str, sockets: SocketFactory,
                 emit: Callable[[FlowRecord], None]) -> None:
        self.node, self._maker, self._emit = node, sockets, emit
        self.refused: dict[RefuseKey, Refused] = {}
        self._socks: dict[str, socket.socket] = {}
        self._seen: dict[tuple[str, str, int, str, int], float] = {}

    def __repr__(self) -> str:
        return f"<RefusalWatch {self.node} {len(self.refused)} refused ports>"

    def update(self, refused: Mapping[RefuseKey, Refused]) -> None:
        self.refused = dict(refused)
        for proto, number in (("TCP", socket.IPPROTO_TCP), ("UDP", socket.IPPROTO_UDP)):
            pairs = sorted((ip, port) for p, ip, port in self.refused if p == proto)
            sock = self._socks.get(proto)
            if not pairs:
                if sock is not None:
                    self._close(proto)
                continue
            if sock is None:
                sock = self._open(proto, number)
                if sock is None:
                    continue
            try:
                _set_filter(sock.fileno(), bpf_program(pairs, tcp_syn=proto == "TCP"))
            except OSError as exc:
                log.warning("%s: refused-flow filter for %s not set (%s)", self.node, proto, exc)

    def _open(self, proto: str, number: int) -> socket.socket | None:
        try:
            sock = self._maker.new(socket.SOCK_RAW, proto=number)
            _set_filter(sock.fileno(), bpf_program([], tcp_syn=False))  # nothing until set
        except OSError as exc:
            log.warning("%s: no raw %s socket (%s); refusals happen but are not recorded as "
                        "flows", self.node, proto, exc)
            return None
        self._socks[proto] = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._read, proto, sock)
        return sock

    def _close(self, proto: str) -> None:
        sock = self._socks.pop(proto)
        try:
            asyncio.get_running_loop().remove_reader(sock.fileno())
        except RuntimeError:
            pass
        sock.close()

    def close(self) -> None:
        for proto in list(self._socks):
            self._close(proto)

    def _read(self, proto: str, sock: socket.socket) -> None:
        for _ in range(256):
            try:
                data = sock.recv(SNAP)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("%s: raw %s socket: %s", self.node, proto, exc)
                return
            parsed = parse_packet(data)
            if parsed is not None:
                self._record(proto, *parsed)

    def _record(self, proto: str, src: str, sport: int, dst: str, dport: int) -> None:
        ref = self.refused.get((proto, dst, dport))
        if ref is None:
            return
        now = time.monotonic()
        key = (proto, src, sport, dst, dport)
        if now - self._seen.get(key, -DEDUP_SECONDS) < DEDUP_SECONDS:
            return
        if len(self._seen) > 4096:
            self._seen = {k: t for k, t in self._seen.items() if now - t < DEDUP_SECONDS}
        self._seen[key] = now
        sp = ref.sp
        dropped = ref.verdict == DROP
        rec = FlowRecord(time=time.time(), node=self.node, protocol=proto.lower(),
                         client_ip=src, client_port=sport, service=sp.service,
                         service_port=sp.port, port_name=sp.port_name,
                         verdict=DROPPED if dropped else REFUSED,
                         error=(sp.why or "no local endpoints") if dropped else "no endpoints")
        rec.reason = f"{'drop' if dropped else 'reject'} {dst}:{dport}"
        self._emit(rec)
