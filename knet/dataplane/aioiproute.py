"""`KnetIPRoute`: pyroute2's AsyncIPRoute on any asyncio loop, uvloop included.

AsyncIPRoute receives through `loop.create_datagram_endpoint`, which uvloop refuses for
AF_NETLINK sockets ("invalid family 16"). knet's daemons run on uvloop, so this subclass
receives with `loop.add_reader` on the socket instead (what asyncio's own datagram
transport does inside) and hands datagrams to pyroute2's protocol unchanged. Requests are
sent by pyroute2 on the socket directly, as before.
"""

from __future__ import annotations

import asyncio
import socket

from pyroute2 import AsyncIPRoute  # type: ignore[import-untyped]
from pyroute2.netlink.core import CoreDatagramProtocol  # type: ignore[import-untyped]

__all__ = ["KnetIPRoute"]

RECV_SIZE = 1 << 20


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
