"""ztunnel's part on the node proxy: enrollment, identities and in-pod redirection.

For every meshed pod on this node (its namespace labelled `istio.io/dataplane-mode=ambient`,
the pod not labelled `istio.io/dataplane-mode=none`, running with a pod IP, not on the host
network) the proxy, from its one event loop, opens sockets inside the pod's netns:

- outbound, 127.0.0.1-redirected 15001: an nftables rule in the pod's netns redirects its
  TCP to ClusterIPs there; the connection is served by the same L4/L7 code as the node's
  ClusterIP listener (a per-pod copy of it, `TcpListener`/`HttpListener.protocol()`), with
  the pod's `PodGuard`, so the hop to a meshed endpoint leaves the pod's eth0 in mutual TLS
  with the pod's own certificate; its TCP to other pods' IPs likewise (direct.py);
- inbound 15008: mutual TLS from other pods' proxies (inbound.py).

Key design choice: the proxy holds each local workload's key and certificate (made on the
node, signed by the control plane: certs.py) as ztunnel does, and everything runs as
callbacks on the one loop; a pod's plumbing is made when it becomes meshed and removed when
it stops being meshed or goes away.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from knet.dataplane import names
from knet.dataplane.meshredirect import OUTBOUND_PORT
from knet.mesh.certs import CertSigner, WorkloadCert, issue
from knet.mesh.direct import DirectPods, MarkedSockets
from knet.mesh.guard import HBONE_PORT, PodGuard, Security, Workload
from knet.mesh.inbound import Inbound, PlainInbound, original_dst
from knet.proxy.http import HttpListener
from knet.proxy.sockets import set_rst_on_close
from knet.proxy.tcp import ProxyContext, TcpListener

log = logging.getLogger(__name__)

__all__ = ["INBOUND_PLAIN_PORT", "OUTBOUND_PORT", "InPodMesh", "Redirect"]

INBOUND_PLAIN_PORT = 15006


class Redirect(Protocol):
    """Steers a pod's TCP to ClusterIPs to the proxy's outbound port inside its netns."""
    async def install(self, netns: str, *, exempt: str = "") -> None: ...
    async def remove(self, netns: str) -> None: ...


class _ProxierLike(Protocol):
    ctx: ProxyContext
    listeners: dict[tuple[str, str, int], Any]
    http_retries: int
    http_timeout: float


class _Plumbing:
    """One meshed pod's sockets, certificate and per-pod listeners."""

    def __init__(self, owner: InPodMesh, w: Workload, netns: str) -> None:
        self.owner, self.w, self.netns = owner, w, netns
        self.cert = WorkloadCert(w.key)
        self.sockets: MarkedSockets | None = None
        self.direct: DirectPods | None = None   # pod IP destinations (direct.py)
        self.ctx: ProxyContext | None = None
        self.per_listener: dict[int, tuple[Any, Any]] = {}
        self.servers: list[asyncio.AbstractServer] = []
        self.accepting: asyncio.Task[None] | None = None
        self.lsock: socket.socket | None = None

    def __repr__(self) -> str:
        return f"<InPod {self.w.key} {self.w.ip} {self.cert.identity or '(no cert)'}>"

    async def start(self) -> None:
        o = self.owner
        await issue(o.signer, self.cert, seconds=o.cert_seconds)
        self.sockets = MarkedSockets(self.netns)
        base = o.proxier.ctx
        self.ctx = ProxyContext(node=base.node, balancer=base.balancer, ring=base.ring,
                                sockets=self.sockets, dial_timeouts=base.dial_timeouts,
                                half_close_timeout=base.half_close_timeout, record=base.record,
                                mesh=base.mesh, guard=PodGuard(o.world, self.cert))
        if o.pod_cidr:
            self.direct = DirectPods(self.ctx, o.world, o.pod_cidr)
        loop = asyncio.get_running_loop()
        inbound = self.sockets.listener("0.0.0.0", HBONE_PORT)
        self.servers.append(await loop.create_server(
            lambda: Inbound(node=base.node, workload=self.w, world=o.world,
                            sockets=self.sockets, ring=base.ring,  # type: ignore[arg-type]
                            identity=self.cert.identity),
            sock=inbound, ssl=self.cert.server, ssl_handshake_timeout=5.0, backlog=1024))
        plain = self.sockets.listener("0.0.0.0", INBOUND_PLAIN_PORT)
        self.servers.append(await loop.create_server(
            lambda: PlainInbound(node=base.node, workload=self.w, world=o.world,
                                 sockets=self.sockets, ring=base.ring,  # type: ignore[arg-type]
                                 identity=self.cert.identity), sock=plain, backlog=1024))
        self.lsock = self.sockets.listener("0.0.0.0", OUTBOUND_PORT)
        self.accepting = loop.create_task(self._accept(self.lsock))
        await o.redirect.install(self.netns, exempt=o.gateway_of(self.w.ip))
        log.info("mesh: %s enrolled (identity %s, netns %s)", self.w.key, self.cert.identity,
                 self.netns)

    async def _accept(self, lsock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(lsock)
            try:
                ip, port = original_dst(conn)
                ln = self._listener(ip, port)
                if ln is None:
                    set_rst_on_close(conn)
                    conn.close()
                    continue
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                await loop.connect_accepted_socket(ln.protocol, conn)
            except OSError as exc:
                log.info("mesh: %s: outbound connection dropped: %s", self.w.key, exc)
                conn.close()

    def _listener(self, ip: str, port: int) -> Any:
        """The per-pod twin of the node's listener for ip:port (None: nothing serves it)."""
        node_ln = self.owner.proxier.listeners.get(("TCP", ip, port))
        if node_ln is None and self.direct is not None and self.direct.serves(ip):
            return self.direct.listener(ip, port)
        if node_ln is None or self.ctx is None:
            return None
        got = self.per_listener.get(id(node_ln))
        if got is not None and got[0] is node_ln:
            got[1].sp = node_ln.sp
            return got[1]
        p = self.owner.proxier
        if isinstance(node_ln, HttpListener):
            mine: Any = HttpListener(self.ctx, node_ln.sp, ip=ip, port=port,
                                     retries=p.http_retries, timeout=p.http_timeout)
        else:
            mine = TcpListener(self.ctx, node_ln.sp, ip=ip, port=port)
        for key, (old, ln) in list(self.per_listener.items()):
            if old is not p.listeners.get(("TCP", old.ip, old.port)):
                del self.per_listener[key]
                asyncio.get_running_loop().create_task(ln.close())
        self.per_listener[id(node_ln)] = (node_ln, mine)
        return mine

    async def renew_if_due(self, now: float) -> None:
        if self.cert.due(now):
            await issue(self.owner.signer, self.cert, seconds=self.owner.cert_seconds)

    async def stop(self, *, unredirect: bool) -> None:
        if self.accepting is not None:
            self.accepting.cancel()
        for server in self.servers:
            server.close()
        for _, ln in self.per_listener.values():
            await ln.close()
        if self.direct is not None:
            await self.direct.close()
        if self.lsock is not None:
            self.lsock.close()
        if self.sockets is not None:
            self.sockets.close()
        if unredirect:
            try:
                await self.owner.redirect.remove(self.netns)
            except OSError as exc:
                log.info("mesh: %s: %s", self.w.key, exc)


class InPodMesh:
    """The local meshed pods' plumbing, reconciled against `Security` (level-triggered)."""

    def __init__(self, proxier: _ProxierLike, *, node: str, world: Callable[[], Security],
                 signer: CertSigner, redirect: Redirect, cert_seconds: int = 24 * 3600,
                 netns_of: Callable[[str, str], str] = names.pod_netns,
                 gateway_of: Callable[[str], str] = lambda ip: ip.rsplit(".", 1)[0] + ".1",
                 pod_cidr: str = "") -> None:
        self.pod_cidr = pod_cidr      # "": ClusterIP traffic only; else pod IPs too (direct.py)
        self.proxier, self.node, self.world = proxier, node, world
        self.signer, self.redirect, self.cert_seconds = signer, redirect, cert_seconds
        self.netns_of = netns_of
        self.gateway_of = gateway_of  # the node's address on the pod's bridge (a /24's .1)
        self.pods: dict[str, _Plumbing] = {}
        self.failed: dict[str, float] = {}  # pod key -> when its plumbing last failed

    def __repr__(self) -> str:
        return f"<InPodMesh {self.node} {len(self.pods)} pods>"

    def wanted(self, sec: Security) -> Mapping[str, Workload]:
        return {w.key: w for w in sec.by_ip.values() if w.meshed and w.node == self.node}

    async def reconcile(self) -> None:
        want = self.wanted(self.world())
        for key, pl in list(self.pods.items()):
            w = want.get(key)
            if w is None or w.ip != pl.w.ip or w.account != pl.w.account:
                del self.pods[key]
                await pl.stop(unredirect=w is not None)
        now = time.monotonic()
        for key, w in want.items():
            if key in self.pods or now - self.failed.get(key, -60.0) < 5.0:
                continue
            pl = _Plumbing(self, w, self.netns_of(self.node, key))
            try:
                await pl.start()
            except Exception as exc:  # noqa: BLE001 - a pod going away mid-way, a CA hiccup
                log.warning("mesh: %s: cannot enroll yet (%s); retrying in 5s", key, exc)
                self.failed[key] = now
                await pl.stop(unredirect=False)
                continue
            self.failed.pop(key, None)
            self.pods[key] = pl
        wall = time.time()
        for pl in list(self.pods.values()):
            try:
                await pl.renew_if_due(wall)
            except Exception as exc:  # noqa: BLE001 - keep the old cert until it works
                log.warning("mesh: %s: renewing its certificate failed: %s", pl.w.key, exc)

    async def stop(self) -> None:
        for pl in list(self.pods.values()):
            await pl.stop(unredirect=False)
        self.pods.clear()
        close = getattr(self.redirect, "close", None)   # NftRedirect's libnftables worker
        if close is not None:
            close()
