"""The node's proxy as `knet proxy` runs it (its own process per node, beside the agent, so
that a dead kubelet never stops Service traffic): Proxier + its watch source + the flow ring +
the pod-name resolver, started and stopped as one `NodeProxy`.

`start_node_proxy(...)` is the one call the process entry (knet/cli/commands/proxy.py) makes;
`proxy_mode="nftables"` picks the kernel proxier (knet/proxy/nftproxier.py) instead of the
userspace one (no listeners, no mesh: the kernel DNATs).
ClusterIPs are asked of the dataplane (`add_service_ip(node, ip)`) through
`DataplaneAddresses`; client pod names in flow records come from a Pods informer (pod IP ->
namespace/name). The caller serves the ring's GET /flows (`NodeProxy.flows_routes()`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Protocol

from aiohttp import web

from control.clientbase import Client, Obj
from knet.dataplane.nft import Nft
from knet.mesh.metrics import MeshMetrics, metrics_routes, workload_of
from knet.mesh.secsource import attach_security
from knet.mesh.source import attach_mesh
from knet.proxy.flows import FlowRing, flows_routes
from knet.proxy.nftproxier import NftProxier
from knet.proxy.proxier import Proxier
from knet.proxy.source import SourcePolicy
from knet.servicesource import (
    InformerFactory,
    InformerLike,
    ServiceSource,
    default_informer_factory,
)

log = logging.getLogger(__name__)

__all__ = ["DataplaneAddresses", "NodeProxy", "PodIndex", "start_node_proxy"]


class ServiceIPDataplane(Protocol):
    async def add_service_ip(self, node: str, ip: str) -> None: ...
    async def remove_service_ip(self, node: str, ip: str) -> None: ...


class DataplaneAddresses:
    """AddressManager over knet.dataplane: ClusterIPs as /32s on the node's service device."""

    def __init__(self, dataplane: ServiceIPDataplane, node: str) -> None:
        self.dataplane, self.node = dataplane, node

    async def add_service_ip(self, ip: str) -> None:
        await self.dataplane.add_service_ip(self.node, ip)

    async def remove_service_ip(self, ip: str) -> None:
        await self.dataplane.remove_service_ip(self.node, ip)


class PodIndex:
    """Pod IP -> "namespace/name", kept by a Pods informer; `resolve` is the flow resolver."""

    def __init__(self) -> None:
        self.by_ip: dict[str, str] = {}
        self.workloads: dict[str, str] = {}  # "ns/name" -> workload (Deployment...) name

    def resolve(self, ip: str) -> str | None:
        return self.by_ip.get(ip)

    def workload(self, pod: str) -> str | None:
        return self.workloads.get(pod)

    @staticmethod
    def _ips(pod: Obj) -> list[str]:
        status = pod.get("status") or {}
        ips = [p.get("ip") for p in status.get("podIPs") or []] or [status.get("podIP")]
        spec = pod.get("spec") or {}
        return [] if spec.get("hostNetwork") else [ip for ip in ips if ip]

    def on_add(self, pod: Obj) -> None:
        meta = pod.get("metadata") or {}
        key = f"{meta.get('namespace', 'default')}/{meta.get('name', '')}"
        self.workloads[key] = workload_of(pod)
        for ip in self._ips(pod):
            self.by_ip[ip] = key

    def on_update(self, old: Obj, new: Obj) -> None:
        self.on_delete(old)
        self.on_add(new)

    def on_delete(self, pod: Obj) -> None:
        meta = pod.get("metadata") or {}
        self.workloads.pop(f"{meta.get('namespace', 'default')}/{meta.get('name', '')}", None)
        for ip in self._ips(pod):
            self.by_ip.pop(ip, None)


class NodeProxy:
    def __init__(self, proxier: Proxier | NftProxier, source: ServiceSource, pods: InformerLike | None,
                 metrics: MeshMetrics | None = None) -> None:
        self.proxier, self.source, self.pods = proxier, source, pods
        self.ring = proxier.ring
        self.metrics = metrics if metrics is not None else MeshMetrics()

    def __repr__(self) -> str:
        return f"<NodeProxy {self.proxier!r}>"

    def flows_routes(self) -> list[web.RouteDef]:
        return flows_routes(self.ring)

    def metrics_routes(self) -> list[web.RouteDef]:
        return metrics_routes(self.metrics)

    async def stop(self) -> None:
        await self.source.stop()
        if self.pods is not None:
            await self.pods.stop()
        await self.proxier.stop()


async def start_node_proxy(*, client: Client, node_name: str, netns: str | None,
                           node_ips: Iterable[str] = (), dataplane: ServiceIPDataplane | None = None,
                           services: InformerLike | None = None,
                           informer: InformerFactory | None = None, resolve_pods: bool = True,
                           mesh_security: bool = True, source_ip: SourcePolicy | None = None,
                           proxy_mode: str = "userspace", nft: Nft | None = None,
                           **options: Any) -> NodeProxy:
    """Start the node's proxy; `options` go to `Proxier` (udp_idle_timeout, http_retries,
    http_timeout, flow_ring, ...) or, with proxy_mode "nftables", to `NftProxier`
    (cluster_cidr, conntrack) which programs the node through `nft`."""
    factory = informer or default_informer_factory()
    index = PodIndex()
    ring = options.pop("flow_ring", None)
    ring = ring if ring is not None else FlowRing()
    if resolve_pods:
        ring.resolver = index.resolve
    metrics = MeshMetrics(workloads=index.workload)   # golden metrics (knet/mesh/metrics.py)
    ring.sinks.append(metrics.observe)
    if proxy_mode == "nftables":
        return _start_nft(client=client, node_name=node_name, netns=netns, node_ips=node_ips,
                          ring=ring, index=index, metrics=metrics, factory=factory,
                          services=services, nft=nft, resolve_pods=resolve_pods, **options)
    addresses = DataplaneAddresses(dataplane, node_name) if dataplane is not None else None
    proxier = Proxier(node_name, netns=netns, node_ips=node_ips, address_manager=addresses,
                      flow_ring=ring, **options)
    proxier.ctx.source = source_ip   # client source IPs kept (knet/proxy/source.py), or None
    pods = None
    if resolve_pods:
        pods = factory(client, "pods")
        pods.add_handler(on_add=index.on_add, on_update=index.on_update,
                         on_delete=index.on_delete)
        pods.start()
    source = ServiceSource(client, proxier, informer=factory, services=services)
    source.add_companion(attach_mesh(client, proxier, factory))  # the mesh (knet/mesh)
    if mesh_security:  # mTLS, identities, authorization (knet/mesh/secsource.py)
        source.add_companion(attach_security(client, proxier, factory, node=node_name))
    source.start()
    log.info("node %s: proxy started (netns %s, node IPs %s)", node_name, netns or "(own)",
             ", ".join(node_ips) or "none")
    return NodeProxy(proxier, source, pods, metrics)


def _pods_informer(client: Client, factory: InformerFactory, index: PodIndex) -> InformerLike:
    pods = factory(client, "pods")
    pods.add_handler(on_add=index.on_add, on_update=index.on_update, on_delete=index.on_delete)
    pods.start()
    return pods


def _start_nft(*, client: Client, node_name: str, netns: str | None, node_ips: Iterable[str],
               ring: FlowRing, index: PodIndex, metrics: MeshMetrics, factory: InformerFactory,
               services: InformerLike | None, nft: Nft | None, resolve_pods: bool,
               **options: Any) -> NodeProxy:
    """The nftables mode: the kernel proxier, flows from conntrack, no mesh (it lives on the
    userspace L7 path)."""
    owned = nft is None
    if nft is None:
        from knet.dataplane.nft import LibNft
        nft = LibNft()
    proxier = NftProxier(node_name, nft=nft, netns=netns, node_ips=node_ips, flow_ring=ring,
                         close_nft=owned, **options)
    pods = _pods_informer(client, factory, index) if resolve_pods else None
    source = ServiceSource(client, proxier, informer=factory, services=services)
    source.start()
    proxier.start_flows()
    log.info("node %s: proxy started in nftables mode (netns %s, node IPs %s)", node_name,
             netns or "(own)", ", ".join(node_ips) or "none")
    return NodeProxy(proxier, source, pods, metrics)
