"""Pod-IP traffic of a meshed pod: its TCP straight to another pod's IP, redirected to the
proxy's outbound port in its netns (knet/dataplane/meshredirect.py) like its ClusterIP
traffic, leaves over the same path: to a meshed pod in mutual TLS with the pod's certificate
to the destination pod's 15008 (HBONE), the destination's identity looked up by IP in the
mesh's `Security`; to a pod outside the mesh in plaintext, as before the redirect.

Key design choice: a pod IP:port is served as a one-endpoint service port ("the service" of
its flow records is the destination pod, `ns/name`, the port name the port number) by the
same `TcpListener` and `PodGuard` as ClusterIP traffic, with a balancer of its own, so
splicing, mTLS, identity checks and flow records are one code path. The proxy's sockets in
the pod's netns carry `PROXY_MARK` so that its own dials to pod IPs are not redirected.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import replace

from knet.dataplane.meshredirect import PROXY_MARK
from knet.mesh.guard import Security
from knet.proxy.balancer import Endpoint, LoadBalancer, SystemClock
from knet.proxy.config import ServicePort
from knet.proxy.sockets import SocketMaker
from knet.proxy.tcp import ProxyContext, TcpListener

__all__ = ["DirectPods", "MarkedSockets"]


class MarkedSockets(SocketMaker):
    """The proxy's sockets in a meshed pod's netns: marked, never redirected back to it."""

    def new(self, kind: int = socket.SOCK_STREAM, family: int = socket.AF_INET, *,
            proto: int = 0) -> socket.socket:
        sock = super().new(kind, family, proto=proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, PROXY_MARK)
        return sock


class DirectPods:
    """One meshed pod's listeners for pod IP:port destinations (made on first use)."""

    def __init__(self, ctx: ProxyContext, world: Callable[[], Security], pod_cidr: str) -> None:
        self.ctx = replace(ctx, balancer=LoadBalancer(clock=SystemClock()), mesh=None)
        self.world, self.pod_cidr = world, ipaddress.ip_network(pod_cidr)
        self.listeners: dict[tuple[str, int], TcpListener] = {}

    def __repr__(self) -> str:
        return f"<DirectPods {len(self.listeners)} destinations>"

    def serves(self, ip: str) -> bool:
        try:
            return ipaddress.ip_address(ip) in self.pod_cidr
        except ValueError:
            return False

    def listener(self, ip: str, port: int) -> TcpListener:
        w = self.world().by_ip.get(ip)
        pod = w.key if w is not None else ""
        ns, _, name = pod.partition("/")
        sp = ServicePort(namespace=ns, name=name or ip, port_name=str(port), cluster_ip=ip,
                         port=port, protocol="TCP", endpoints=(Endpoint(ip, port, pod),))
        ln = self.listeners.get((ip, port))
        if ln is not None and ln.sp == sp:
            return ln
        if ln is not None:      # another pod has the IP now: its connections finish
            asyncio.get_running_loop().create_task(ln.close())
        self.ctx.balancer.update(sp.key, sp.endpoints)
        ln = self.listeners[(ip, port)] = TcpListener(self.ctx, sp, ip=ip, port=port)
        return ln

    async def close(self) -> None:
        for ln in self.listeners.values():
            await ln.close()
        self.listeners.clear()
