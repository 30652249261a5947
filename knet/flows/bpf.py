"""BPF filters: a tcpdump expression compiled by libpcap (through ctypes, no process) into
classic BPF, and attached to a raw socket with SO_ATTACH_FILTER so the kernel drops what
the user did not ask for before it is copied to us.

libpcap's own error text is kept ("syntax error", "unknown host 'x'"), prefixed with the
expression, so a bad filter is a one-line error before any socket is opened.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import socket
import struct

from knet.errors import KnetError

__all__ = ["DLT_EN10MB", "BpfError", "attach_filter", "compile_filter"]

DLT_EN10MB = 1
SO_ATTACH_FILTER = 26
Program = list[tuple[int, int, int, int]]


class BpfError(KnetError):
    """A filter expression libpcap rejects."""


class _Insn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint32)]


class _Prog(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_Insn))]


def _libpcap() -> ctypes.CDLL:
    name = ctypes.util.find_library("pcap")
    if not name:
        raise BpfError("BPF filters need libpcap (apt-get install libpcap0.8)")
    lib = ctypes.CDLL(name)
    lib.pcap_open_dead.restype = ctypes.c_void_p
    lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.pcap_compile.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Prog), ctypes.c_char_p,
                                 ctypes.c_int, ctypes.c_uint32]
    lib.pcap_geterr.restype = ctypes.c_char_p
    lib.pcap_geterr.argtypes = [ctypes.c_void_p]
    lib.pcap_freecode.argtypes = [ctypes.POINTER(_Prog)]
    lib.pcap_close.argtypes = [ctypes.c_void_p]
    return lib


def compile_filter(expr: str, *, snaplen: int = 262144) -> Program:
    """The classic BPF program of a tcpdump expression on Ethernet, as (code, jt, jf, k)."""
    lib = _libpcap()
    handle = lib.pcap_open_dead(DLT_EN10MB, snaplen)
    prog = _Prog()
    try:
        if lib.pcap_compile(handle, ctypes.byref(prog), expr.encode(), 1, 0xFFFFFFFF) != 0:
            err = (lib.pcap_geterr(handle) or b"invalid expression").decode(errors="replace")
            raise BpfError(f"filter {expr!r}: {err}")
        out = [(prog.bf_insns[i].code, prog.bf_insns[i].jt, prog.bf_insns[i].jf,
                prog.bf_insns[i].k) for i in range(prog.bf_len)]
        lib.pcap_freecode(ctypes.byref(prog))
        return out
    finally:
        lib.pcap_close(handle)


def attach_filter(sock: socket.socket, program: Program) -> None:
    """SO_ATTACH_FILTER: the kernel runs `program` on every packet before queueing it."""
    raw = b"".join(struct.pack("HBBI", *insn) for insn in program)
    buf = ctypes.create_string_buffer(raw)
    fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
