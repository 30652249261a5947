"""The proxy's security hooks (`ProxyContext.guard`): who the workloads are, how a hop to an
endpoint is made (mutual TLS or plaintext), who may connect, and what flow records say.

`Security` is the watched world as plain data (meshed pods by IP with their ServiceAccount,
PeerAuthentications, AuthorizationPolicies), replaced whole on change. Two guards read it:

- `PodGuard`: the hooks of a meshed client pod's in-pod listeners (ztunnel.py). A hop to a
  meshed endpoint whose PeerAuthentication is not DISABLE is mutual TLS with the pod's
  certificate to the endpoint's port 15008 (the server-side proxy, in the endpoint's pod),
  the first bytes inside TLS being `CONNECT ip:port HTTP/1.1` (HBONE's shape on HTTP/1.1,
  without waiting for an answer: a refusal is a reset); the server's certificate must name
  the endpoint's ServiceAccount.
- `NodeGuard`: the hooks of the node's ClusterIP listeners, which only clients outside the
  mesh reach (meshed pods are redirected in their own netns): plaintext, refused (reset)
  when every endpoint is STRICT or denies the unauthenticated peer at L4.

Both enforce AuthorizationPolicies bound by targetRefs to the Service on the L7 path (the
waypoint's part: 403 `RBAC: access denied`).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from control.models.meshsecurity import AuthorizationPolicy, PeerAuthentication
from knet.mesh.authz import (
    Decision,
    Peer,
    Target,
    authorize,
    mtls_mode,
    policies_for_service,
    policies_for_workload,
    principal_of,
)
from knet.mesh.certs import WorkloadCert, spiffe_of
from knet.proxy.balancer import Endpoint
from knet.proxy.config import ServicePort
from knet.proxy.flows import FlowRecord

__all__ = ["HBONE_PORT", "Guard", "NodeGuard", "PodGuard", "Security", "Workload"]

P = TypeVar("P", bound=asyncio.BaseProtocol)
HBONE_PORT = 15008
HANDSHAKE_TIMEOUT = 5.0
TRUST_DOMAIN = "cluster.local"


@dataclass(frozen=True, slots=True)
class Workload:
    namespace: str
    name: str
    ip: str
    node: str
    account: str
    labels: Mapping[str, str]
    meshed: bool

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def spiffe(self) -> str:
        return f"spiffe://{TRUST_DOMAIN}/ns/{self.namespace}/sa/{self.account}"


@dataclass(frozen=True, slots=True)
class Security:
    """The mesh's security world, as the node proxy last saw it (immutable; swapped whole)."""
    by_ip: Mapping[str, Workload] = field(default_factory=dict)
    peerauths: tuple[PeerAuthentication, ...] = ()
    policies: tuple[AuthorizationPolicy, ...] = ()
    modes: dict[tuple[str, int | None], str] = field(default_factory=dict, compare=False)

    def mode(self, w: Workload, port: int | None) -> str:
        """The workload's mTLS mode (memoized: a Security is replaced whole on change)."""
        key = (w.key, port)
        got = self.modes.get(key)
        if got is None:
            got = self.modes[key] = mtls_mode(self.peerauths, namespace=w.namespace,
                                              labels=w.labels, port=port)
        return got

    def tls_to(self, ep_ip: str, port: int) -> Workload | None:
        """The meshed workload at ep_ip if a hop to it is mutual TLS, else None."""
        w = self.by_ip.get(ep_ip)
        if w is None or not w.meshed or self.mode(w, port) == "DISABLE":
            return None
        return w

    def l4(self, w: Workload, peer: Peer, port: int) -> Decision:
        pols = policies_for_workload(self.policies, namespace=w.namespace, labels=w.labels)
        return authorize(pols, peer, Target(port=port), l7=False)


class Guard(Protocol):
    def target(self, ep: Endpoint) -> tuple[str, int]: ...
    async def wrap(self, factory: Callable[[], P], sock: socket.socket,
                   ep: Endpoint) -> tuple[asyncio.Transport, P]: ...
    def admit(self, sp: ServicePort, rec: FlowRecord) -> str: ...
    def authorize(self, sp: ServicePort, rec: FlowRecord) -> bool: ...
    def annotate(self, rec: FlowRecord) -> None: ...


def _l7(security: Security, sp: ServicePort, rec: FlowRecord, principal: str | None) -> bool:
    pols = policies_for_service(security.policies, namespace=sp.namespace, name=sp.name)
    if not pols:
        return True
    d = authorize(pols, Peer(rec.client_ip, principal),
                  Target(port=sp.port, method=rec.method, path=rec.path), l7=True)
    rec.authz, rec.authz_policy = d.verdict, d.policy
    return d.allowed


class PodGuard:
    """A meshed client pod's hooks: mTLS with its certificate to meshed endpoints."""

    def __init__(self, world: Callable[[], Security], cert: WorkloadCert) -> None:
        self.world, self.cert = world, cert

    def __repr__(self) -> str:
        return f"<PodGuard {self.cert.pod} {self.cert.identity}>"

    def target(self, ep: Endpoint) -> tuple[str, int]:
        if self.world().tls_to(ep.ip, ep.port) is not None:
            return (ep.ip, HBONE_PORT)
        return (ep.ip, ep.port)

    async def wrap(self, factory: Callable[[], P], sock: socket.socket,
                   ep: Endpoint) -> tuple[asyncio.Transport, P]:
        loop = asyncio.get_running_loop()
        w = self.world().tls_to(ep.ip, ep.port)
        if w is None:
            t, p = await loop.create_connection(factory, sock=sock)
            return t, p
        t, p = await loop.create_connection(factory, sock=sock, ssl=self.cert.client,
                                            server_hostname="",
                                            ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        ssl_object = t.get_extra_info("ssl_object")
        peer = spiffe_of(ssl_object.getpeercert(binary_form=True) if ssl_object else None)
        if peer != w.spiffe:
            t.abort()
            raise ConnectionRefusedError(f"mesh: {ep.addr} presented identity {peer}, "
                                         f"expected {w.spiffe} (pod {w.key})")
        t.write(b"CONNECT %s:%d HTTP/1.1\r\n\r\n" % (ep.ip.encode(), ep.port))
        return t, p

    def admit(self, sp: ServicePort, rec: FlowRecord) -> str:
        return ""  # a meshed client: the server-side proxy decides on its identity

    def authorize(self, sp: ServicePort, rec: FlowRecord) -> bool:
        return _l7(self.world(), sp, rec, principal_of(self.cert.identity))

    def annotate(self, rec: FlowRecord) -> None:
        rec.source_identity = self.cert.identity
        if rec.endpoint_ip and rec.endpoint_port:
            w = self.world().tls_to(rec.endpoint_ip, rec.endpoint_port)
            if w is not None:
                rec.mtls, rec.destination_identity = True, w.spiffe


class NodeGuard:
    """The node's ClusterIP listeners' hooks: plaintext clients from outside the mesh."""

    def __init__(self, world: Callable[[], Security]) -> None:
        self.world = world

    def __repr__(self) -> str:
        return "<NodeGuard>"

    def target(self, ep: Endpoint) -> tuple[str, int]:
        return (ep.ip, ep.port)

    async def wrap(self, factory: Callable[[], P], sock: socket.socket,
                   ep: Endpoint) -> tuple[asyncio.Transport, P]:
        t, p = await asyncio.get_running_loop().create_connection(factory, sock=sock)
        return t, p

    def admit(self, sp: ServicePort, rec: FlowRecord) -> str:
        """Refuse (the reason) when no endpoint of sp would take this plaintext peer."""
        sec = self.world()
        peer = Peer(rec.client_ip, None)
        if sec.by_ip.get(rec.client_ip, None) is not None and \
                sec.by_ip[rec.client_ip].meshed:
            return ""  # a meshed pod not redirected yet (its plumbing is starting)
        reasons: list[str] = []
        for ep in sp.endpoints:
            w = sec.by_ip.get(ep.ip)
            if w is None or not w.meshed:
                return ""
            if sec.mode(w, ep.port) == "STRICT":
                reasons.append(f"PeerAuthentication STRICT on {w.key}: plaintext from "
                               "outside the mesh is refused")
                continue
            d = sec.l4(w, peer, ep.port)
            if d.allowed:
                return ""
            rec.authz, rec.authz_policy = d.verdict, d.policy
            reasons.append(f"{w.key}: {d.why} {d.policy}")
        return reasons[0] if reasons else ""

    def authorize(self, sp: ServicePort, rec: FlowRecord) -> bool:
        return _l7(self.world(), sp, rec, None)

    def annotate(self, rec: FlowRecord) -> None:
        if rec.endpoint_ip:
            w = self.world().by_ip.get(rec.endpoint_ip)
            if w is not None and w.meshed:
                rec.destination_identity = w.spiffe
