"""`loadBalancerSourceRanges` enforced on the listening socket, as kube-proxy's firewall
chain drops: a classic BPF socket filter on each LoadBalancer address's listener passes only
packets whose source address is in one of the ranges (and the LoadBalancer address itself:
a node reaching its own address hairpins, which kube-proxy allows too). The kernel runs the
filter before a SYN makes a connection or a datagram is queued, so a client outside gets no
answer at all and times out, exactly like a DROP rule; nothing is accepted, no fd is spent.
The source address is read at the network header (SKF_NET_OFF), whatever the socket type.
"""

from __future__ import annotations

import ctypes
import ipaddress
import socket
import struct
from collections.abc import Iterable

__all__ = ["MAX_RANGES", "detach", "program", "restrict"]

SO_ATTACH_FILTER, SO_DETACH_FILTER = 26, 27
SKF_NET_OFF = -0x100000
MAX_RANGES = 120          # each range is two instructions; jump offsets are 8 bits
_LD_W_ABS, _AND_K, _JEQ_K, _RET_K = 0x20, 0x54, 0x15, 0x06
ACCEPT = 0xFFFFFFFF


def _ins(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k & 0xFFFFFFFF)


def program(ranges: Iterable[str], *, also: Iterable[str] = ()) -> bytes:
    """cBPF: accept a packet whose IPv4 source is in `ranges` or is one of `also`."""
    nets = [ipaddress.IPv4Network(r, strict=False) for r in ranges]
    nets += [ipaddress.IPv4Network(f"{a}/32") for a in also]
    if len(nets) > MAX_RANGES:
        raise ValueError(f"{len(nets)} source ranges: a socket filter holds at most "
                         f"{MAX_RANGES}; merge them into wider ranges")
    # ld src; then per range: (and mask; jeq net -> accept; ld src again) ; drop ; accept
    body: list[tuple[int, int, int, int]] = []
    for i, net in enumerate(nets):
        left = len(nets) - i - 1                      # ranges after this one
        to_accept = left * 3 + 2                      # skip the reload, the rest, the drop
        body += [(_AND_K, 0, 0, int(net.netmask)),
                 (_JEQ_K, to_accept, 0, int(net.network_address)),
                 (_LD_W_ABS, 0, 0, SKF_NET_OFF + 12)]
    ops = [(_LD_W_ABS, 0, 0, SKF_NET_OFF + 12), *body, (_RET_K, 0, 0, 0), (_RET_K, 0, 0, ACCEPT)]
    return b"".join(_ins(*op) for op in ops)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def restrict(fd: int, ranges: Iterable[str], *, also: Iterable[str] = ()) -> None:
    """Attach the filter to socket `fd` (replacing any other)."""
    code = program(ranges, also=also)
    buf = ctypes.create_string_buffer(code, len(code))
    prog = _SockFprog(len(code) // 8, ctypes.addressof(buf))
    sock = socket.socket(fileno=fd)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(prog))
    finally:
        sock.detach()


def detach(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
    except OSError:
        pass                                  # no filter attached
    finally:
        sock.detach()
