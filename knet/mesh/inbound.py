"""The server side of a mesh hop: the node proxy's mTLS listener in a meshed pod's netns.

Port 15008 in the pod's own network namespace (ztunnel's HBONE port, in-pod as ambient
does it): the TLS handshake requires a client certificate from the cluster CA, the client's
SPIFFE identity is read from it, the first line inside TLS names the target
(`CONNECT ip:port HTTP/1.1`, ip being this pod's), the workload's AuthorizationPolicies
decide on the verified identity at L4 (a denial is a TCP reset), and the bytes go on in
plaintext to ip:port from inside the pod (never on a wire). One flow record per connection,
on this node, with both identities and the verdict.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import Callable

from knet.mesh.authz import Peer, principal_of
from knet.mesh.certs import spiffe_of
from knet.mesh.guard import Security, Workload
from knet.proxy.flows import ERROR, REFUSED, FlowRecord, FlowRing
from knet.proxy.sockets import SocketMaker, set_rst_on_close

log = logging.getLogger(__name__)

__all__ = ["Inbound", "PlainInbound", "original_dst"]

MAX_HEAD = 1024
SO_ORIGINAL_DST = 80
PROXY_PORTS = (15001, 15006, 15008)  # outbound, plaintext inbound, mTLS inbound


def original_dst(sock: object) -> tuple[str, int]:
    """Where a redirected connection was going (the NAT's original destination)."""
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)  # type: ignore[attr-defined]
    port, packed = struct.unpack_from("!H4s", raw, 2)
    return socket.inet_ntoa(packed), int(port)


class _Back(asyncio.Protocol):
    """The plaintext leg to the workload, inside its pod."""

    def __init__(self, front: Inbound) -> None:
        self.front = front

    def data_received(self, data: bytes) -> None:
        self.front.rec.bytes_received += len(data)
        self.front.t.write(data)

    def eof_received(self) -> bool:
        self.front.finish()
        return False

    def pause_writing(self) -> None:
        self.front.t.pause_reading()

    def resume_writing(self) -> None:
        self.front.t.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.front.finish()


class Inbound(asyncio.Protocol):
    """One mTLS connection from a client-side proxy to this workload."""

    def __init__(self, *, node: str, workload: Workload, world: Callable[[], Security],
                 sockets: SocketMaker, ring: FlowRing, identity: str) -> None:
        self.node, self.w, self.world, self.sockets, self.ring = node, workload, world, sockets, ring
        self.identity = identity  # this workload's own SPIFFE id
        self.t: asyncio.Transport = None  # type: ignore[assignment]
        self.back: asyncio.Transport | None = None
        self.head = b""
        self.pending = b""  # bytes that came before the workload's leg was up
        self.start = 0.0
        self.done = False
        self.rec = FlowRecord(time=time.time(), node=node, protocol="tcp", client_ip="",
                              client_port=0, service="", service_port=0, port_name="hbone")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = transport  # type: ignore[assignment]
        self.start = time.monotonic()
        peer = transport.get_extra_info("peername") or ("?", 0)
        ssl_object = transport.get_extra_info("ssl_object")
        rec = self.rec
        rec.client_ip, rec.client_port = peer[0], peer[1]
        rec.source_identity = spiffe_of(
            ssl_object.getpeercert(binary_form=True) if ssl_object else None) or ""
        rec.destination_identity, rec.mtls = self.identity, True
        rec.endpoint_ip, rec.endpoint_pod = self.w.ip, self.w.key

    def data_received(self, data: bytes) -> None:
        if self.back is not None:
            self.rec.bytes_sent += len(data)
            self.back.write(data)
            return
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > MAX_HEAD:
                self._refuse(REFUSED, "no CONNECT head in the first 1 KiB")
            return
        line, rest = self.head[:end].split(b"\r\n")[0], self.head[end + 4:]
        self.head = b""
        parts = line.split()
        try:
            if len(parts) != 3 or parts[0] != b"CONNECT":
                raise ValueError(line[:60])
            ip, _, port_text = parts[1].decode().rpartition(":")
            port = int(port_text)
        except (ValueError, UnicodeDecodeError):
            self._refuse(REFUSED, f"bad CONNECT head {line[:60]!r}")
            return
        self.rec.endpoint_port = self.rec.service_port = port
        if ip != self.w.ip:
            self._refuse(REFUSED, f"CONNECT to {ip}, but this is {self.w.key} ({self.w.ip})")
            return
        principal = principal_of(self.rec.source_identity) if self.rec.source_identity else None
        d = self.world().l4(self.w, Peer(self.rec.client_ip, principal), port)
        if d.policy:
            self.rec.authz, self.rec.authz_policy = d.verdict, d.policy
        if not d.allowed:
            self._refuse(REFUSED, f"{d.why} {d.policy}")
            return
        self.t.pause_reading()
        self.rec.bytes_sent += len(rest)
        asyncio.get_running_loop().create_task(self._connect(port, rest))

    async def _connect(self, port: int, first: bytes) -> None:
        loop = asyncio.get_running_loop()
        sock = self.sockets.new()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (self.w.ip, port)), 5.0)
            back, _ = await loop.create_connection(lambda: _Back(self), sock=sock)
        except (OSError, TimeoutError) as exc:
            sock.close()
            self._refuse(ERROR, f"{self.w.ip}:{port}: {type(exc).__name__} {exc}".strip())
            return
        if self.done:
            back.close()
            return
        self.back = back
        if first or self.pending:
            back.write(first + self.pending)
            self.pending = b""
        self.t.resume_reading()

    def eof_received(self) -> bool:
        if self.back is not None and self.back.can_write_eof():
            self.back.write_eof()  # TLS has no half-close in asyncio: the transport closes
        self.finish()
        return False

    def pause_writing(self) -> None:
        if self.back is not None:
            self.back.pause_reading()

    def resume_writing(self) -> None:
        if self.back is not None:
            self.back.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.finish()

    def _refuse(self, verdict: str, why: str) -> None:
        self.rec.verdict, self.rec.error = verdict, why
        log.info("mesh: %s refused %s (%s): %s", self.w.key, self.rec.client_ip,
                 self.rec.source_identity or "no identity", why)
        sock = self.t.get_extra_info("socket")
        if sock is not None:
            set_rst_on_close(sock)
        self.t.abort()
        self.finish()

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        if self.back is not None and not self.back.is_closing():
            self.back.close()
        if not self.t.is_closing():
            self.t.close()
        self.rec.duration = time.monotonic() - self.start
        self.ring.record(self.rec)


class PlainInbound(Inbound):
    """Port 15006 in the pod: plaintext sent to the workload from outside the mesh (another
    pod by IP, a proxy on another node), redirected there by the pod's nft rule (the node's
    own address, kubelet probes and the node-local proxy, is exempt). PeerAuthentication
    STRICT refuses it with a reset; otherwise the workload's L4 policies decide for a peer
    without identity."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = transport  # type: ignore[assignment]
        self.start = time.monotonic()
        rec = self.rec
        peer = transport.get_extra_info("peername") or ("?", 0)
        rec.client_ip, rec.client_port, rec.port_name = peer[0], peer[1], "inbound"
        rec.endpoint_ip, rec.endpoint_pod = self.w.ip, self.w.key
        rec.destination_identity = self.identity
        try:
            _, port = original_dst(transport.get_extra_info("socket"))
        except OSError as exc:
            self._refuse(ERROR, f"no original destination: {exc}")
            return
        rec.endpoint_port = rec.service_port = port
        if port in PROXY_PORTS:  # never loop back into the proxy's own in-pod ports
            self._refuse(REFUSED, f"port {port} is the mesh proxy's own")
            return
        sec = self.world()
        if sec.mode(self.w, port) == "STRICT":
            self._refuse(REFUSED, f"PeerAuthentication STRICT on {self.w.key}: plaintext from "
                         "outside the mesh is refused")
            return
        d = sec.l4(self.w, Peer(rec.client_ip, None), port)
        if d.policy:
            rec.authz, rec.authz_policy = d.verdict, d.policy
        if not d.allowed:
            self._refuse(REFUSED, f"{d.why} {d.policy}")
            return
        self.t.pause_reading()
        asyncio.get_running_loop().create_task(self._connect(port, b""))

    def data_received(self, data: bytes) -> None:
        if self.back is None:
            self.rec.bytes_sent += len(data)
            self.pending += data
            return
        super().data_received(data)
