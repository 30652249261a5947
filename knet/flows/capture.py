"""Packet capture: a raw AF_PACKET socket opened inside the interface's netns, a kernel BPF
filter, and a reader thread that keeps raw frames (kernel timestamp + bytes) — nothing is
decoded while capturing.

Measured here: scapy's sniffer drops above ~1-2k packets/s, a plain AF_PACKET read loop keeps
100k/s; so frames are captured raw and decoded (scapy, in decode.py) only when shown. The
socket is created after a thread-local setns (`in_netns`), so it lives in the target netns
and no helper process exists to be left behind. Kernel drops come from PACKET_STATISTICS
and are always reported. An interface that vanishes mid-capture (its pod deleted) ends the
capture with `gone` set, not an exception in a thread.
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from knet.dataplane.nsutil import in_netns
from knet.errors import KnetError
from knet.flows.bpf import Program, attach_filter
from knet.flows.cluster import Iface

log = logging.getLogger(__name__)

__all__ = ["CaptureError", "CaptureStats", "Frame", "RawCapture"]

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
PACKET_OUTGOING = 4
_TS = struct.Struct("qq")


class CaptureError(KnetError):
    """The capture cannot start: no such interface or namespace, no permission."""


@dataclass(frozen=True, slots=True)
class Frame:
    ts_ns: int             # kernel receive timestamp, ns since the epoch
    data: bytes
    outgoing: bool         # sent by this interface (vs received)


@dataclass
class CaptureStats:
    received: int = 0      # frames we read
    dropped: int = 0       # frames the kernel dropped because we were too slow
    unread: int = 0        # frames still queued when the capture had to stop (fell behind)
    gone: str = ""         # why the capture ended early ("interface went away"), or ""


@dataclass
class RawCapture:
    """One interface's capture. `start(on_frame)` runs a reader thread calling `on_frame`
    for each frame (keep it cheap) until `stop()`, `count` frames, or the interface goes."""
    iface: Iface
    program: Program | None = None
    count: int = 0
    snaplen: int = 262144
    rcvbuf: int = 32 << 20
    stats: CaptureStats = field(default_factory=CaptureStats)
    _sock: socket.socket | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)

    def __repr__(self) -> str:
        return f"<RawCapture {self.iface.label} {self.stats.received} frames>"

    def open(self) -> None:
        """Open the socket in the netns, attach the filter, bind to the interface."""
        try:
            if self.iface.netns:
                with in_netns(self.iface.netns):
                    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW,
                                         socket.htons(ETH_P_ALL))
            else:
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        except FileNotFoundError:
            raise CaptureError(f"{self.iface}: netns {self.iface.netns} does not exist "
                               "(the pod or node is gone?)") from None
        except PermissionError:
            raise CaptureError(f"{self.iface}: capturing needs root (CAP_NET_RAW)") from None
        try:
            self._setup(sock)
        except BaseException:
            sock.close()
            raise
        self._sock = sock

    def _setup(self, sock: socket.socket) -> None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, self.rcvbuf)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        if self.program:
            attach_filter(sock, self.program)
        try:
            sock.bind((self.iface.name, 0))
        except OSError as exc:
            if exc.errno in (errno.ENODEV, errno.ENXIO):
                raise CaptureError(f"{self.iface}: no interface {self.iface.name} in netns "
                                   f"{self.iface.netns or '(host)'}") from None
            raise
        # frames queued before bind/filter may belong to any interface: drain them
        sock.setblocking(False)
        try:
            while True:
                sock.recv(65536)
        except BlockingIOError:
            pass
        self._kernel_stats(sock)  # reading resets the counters
        sock.settimeout(0.1)

    def start(self, on_frame: Callable[[Frame], None]) -> None:
        if self._sock is None:
            self.open()
        self._thread = threading.Thread(target=self._run, args=(on_frame,),
                                        name=f"capture {self.iface.label}", daemon=True)
        self._thread.start()

    def _run(self, on_frame: Callable[[Frame], None]) -> None:
        sock, st = self._sock, self.stats
        assert sock is not None
        try:
            self._loop(sock, on_frame)
            if not st.gone and not (self.count and st.received >= self.count):
                self._drain(sock, on_frame)
        finally:
            packets, drops = self._kernel_stats(sock)
            st.dropped += drops
            st.unread = max(0, packets - drops - st.received)
            self.done.set()

    def _loop(self, sock: socket.socket, on_frame: Callable[[Frame], None],
              stop: threading.Event | None = None) -> None:
        st, limit = self.stats, self.count
        recvmsg, snap, anc = sock.recvmsg, self.snaplen, socket.CMSG_SPACE(_TS.size)
        stop = stop or self._stop
        while not stop.is_set():
            try:
                data, cmsgs, _flags, addr = recvmsg(snap, anc)
            except (TimeoutError, BlockingIOError):
                if sock.gettimeout() == 0.0:
                    return
                continue
            except OSError as exc:
                st.gone = f"{self.iface}: interface went away ({exc.strerror or exc})"
                return
            if cmsgs and cmsgs[0][1] == SO_TIMESTAMPNS:
                sec, ns = _TS.unpack_from(cmsgs[0][2])
                ts = sec * 1_000_000_000 + ns
            else:
                ts = time.time_ns()
            st.received += 1
            on_frame(Frame(ts, data, addr[2] == PACKET_OUTGOING))
            if limit and st.received >= limit:
                return

    def _drain(self, sock: socket.socket, on_frame: Callable[[Frame], None]) -> None:
        """Stopped by time or Ctrl-C: take what is already queued (up to 2 s of work)."""
        sock.settimeout(0.0)
        deadline = threading.Event()
        timer = threading.Timer(2.0, deadline.set)
        timer.start()
        try:
            self._loop(sock, on_frame, stop=deadline)
        finally:
            timer.cancel()

    @staticmethod
    def _kernel_stats(sock: socket.socket) -> tuple[int, int]:
        """(packets queued or dropped, packets dropped) since the last call (reading resets)."""
        try:
            packets, drops = struct.unpack("II", sock.getsockopt(SOL_PACKET,
                                                                 PACKET_STATISTICS, 8))
        except OSError:
            return 0, 0
        return int(packets), int(drops)

    def cancel(self) -> None:
        """Ask the reader to stop (safe from the reader thread itself, e.g. in on_frame)."""
        self._stop.set()

    def stop(self, *, timeout: float = 5.0) -> None:
        """Stop the reader thread and close the socket (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._sock is not None and (self._thread is None or not self._thread.is_alive()):
            self._sock.close()
            self._sock = None
