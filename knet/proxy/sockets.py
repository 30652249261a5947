"""Sockets for the proxy, made inside the node's network namespace.

setns(2) is per thread: `SocketMaker` switches this thread into the netns, creates the
socket and switches back; the socket stays in that netns and the one event loop serves
sockets from any namespace. The two namespace fds are opened once and kept, so a switch
costs two syscalls (a few microseconds), cheap enough for every upstream dial.
"""

from __future__ import annotations

import os
import socket
import struct

from knet.dataplane import nsutil

IP_FREEBIND = 15
LINGER_RST = struct.pack("ii", 1, 0)

__all__ = ["SocketMaker", "set_rst_on_close"]


class SocketMaker:
    """Makes non-blocking sockets in netns `netns` (None: this thread's own netns)."""

    def __init__(self, netns: str | None) -> None:
        self.netns = netns
        self._own = self._target = -1
        if netns is not None:
            try:
                self._target = os.open(nsutil.netns_path(netns), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                raise FileNotFoundError(f"proxy: netns {netns} does not exist; "
                                        "is the node up?") from None
            self._own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)

    def __repr__(self) -> str:
        return f"<SocketMaker netns={self.netns or '(own)'}>"

    def new(self, kind: int = socket.SOCK_STREAM, family: int = socket.AF_INET, *,
            proto: int = 0) -> socket.socket:
        if self._target < 0:
            sock = socket.socket(family, kind, proto)
        else:
            nsutil.setns(self._target, nsutil.CLONE_NEWNET)
            try:
                sock = socket.socket(family, kind, proto)
            finally:
                nsutil.setns(self._own, nsutil.CLONE_NEWNET)
        sock.setblocking(False)
        return sock

    def listener(self, ip: str, port: int, kind: int = socket.SOCK_STREAM) -> socket.socket:
        """A socket bound to ip:port (FREEBIND: the address may arrive a moment later)."""
        sock = self.new(kind)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
            sock.bind((ip, port))
            if kind == socket.SOCK_STREAM:
                sock.listen(1024)
        except OSError:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        for fd in (self._target, self._own):
            if fd >= 0:
                os.close(fd)
        self._own = self._target = -1


def set_rst_on_close(sock: object) -> None:
    """SO_LINGER 0: closing sends a RST at once instead of a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)  # type: ignore[attr-defined]
    except OSError:
        pass
