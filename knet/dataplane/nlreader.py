"""One netlink socket opened inside a netns and read on the event loop: the shared part of
the kernel proxy's watches (conntrack events, NFLOG packets).

`loop.add_reader` on the socket (uvloop refuses pyroute2's datagram endpoints for netlink);
each datagram is parsed by the caller's function into plain items handed to a callback, so
no netlink message leaves knet.dataplane. A lost burst (ENOBUFS) is counted and logged.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from contextlib import nullcontext
from typing import Generic, TypeVar

from knet.dataplane import nsutil

log = logging.getLogger(__name__)

__all__ = ["NetlinkReader"]

T = TypeVar("T")


class NetlinkReader(Generic[T]):
    def __init__(self, what: str, netns: str | None, open_socket: Callable[[], socket.socket],
                 parse: Callable[[bytes], list[T]], callback: Callable[[T], None]) -> None:
        self.what, self.netns = what, netns
        self._open, self._parse, self._callback = open_socket, parse, callback
        self.sock: socket.socket | None = None
        self.errors = 0

    def __repr__(self) -> str:
        return f"<NetlinkReader {self.what} {self.netns or 'host'} {'on' if self.sock else 'off'}>"

    def start(self) -> None:
        """Open the socket inside the netns (this thread goes back at once) and read it."""
        with nsutil.in_netns(self.netns) if self.netns else nullcontext():
            self.sock = self._open()
        self.sock.setblocking(False)
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        assert self.sock is not None
        for _ in range(64):
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError as exc:  # ENOBUFS: messages were lost under load; keep going
                self.errors += 1
                log.warning("%s %s: %s (some flow records are lost)", self.what,
                            self.netns or "host", exc)
                continue
            for item in self._parse(data):
                try:
                    self._callback(item)
                except Exception:
                    log.exception("%s %s: handling %r failed", self.what, self.netns or "host",
                                  item)

    def stop(self) -> None:
        if self.sock is not None:
            try:
                asyncio.get_running_loop().remove_reader(self.sock.fileno())
            except RuntimeError:
                pass
            self.sock.close()
            self.sock = None
