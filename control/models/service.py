"""Service, Endpoints and EndpointSlice: what kube-proxy and the DNS read.

The proxy acts on ports (targetPort int-or-string, nodePort, appProtocol), clusterIP(s),
type and ClientIP session affinity; everything else round-trips. Endpoints (core/v1) and
EndpointSlice (discovery.k8s.io/v1) carry the same facts in two shapes, both kept so that
old and new clients see the same set of ready and not-ready addresses.
"""

from __future__ import annotations

from pydantic import Field

from control.models.meta import Condition, IntOrString, KModel, ObjectReference, TopLevel

__all__ = [
    "ClientIPConfig",
    "Endpoint",
    "EndpointAddress",
    "EndpointConditions",
    "EndpointPort",
    "EndpointSlice",
    "EndpointSlicePort",
    "EndpointSubset",
    "Endpoints",
    "LoadBalancerIngress",
    "LoadBalancerStatus",
    "Service",
    "ServicePort",
    "ServiceSpec",
    "ServiceStatus",
    "SessionAffinityConfig",
]


class ServicePort(KModel):
    port: int
    name: str | None = None
    protocol: str | None = None
    target_port: IntOrString | None = None
    node_port: int | None = None
    app_protocol: str | None = None


class ClientIPConfig(KModel):
    timeout_seconds: int | None = None


class SessionAffinityConfig(KModel):
    client_ip: ClientIPConfig | None = None


class ServiceSpec(KModel):
    ports: list[ServicePort] | None = None
    selector: dict[str, str] | None = None
    cluster_ip: str | None = None
    cluster_ips: list[str] | None = None
    type: str | None = None
    external_ips: list[str] | None = None
    external_name: str | None = None
    session_affinity: str | None = None
    session_affinity_config: SessionAffinityConfig | None = None
    external_traffic_policy: str | None = None
    internal_traffic_policy: str | None = None
    publish_not_ready_addresses: bool | None = None
    load_balancer_ip: str | None = None
    ip_families: list[str] | None = None
    ip_family_policy: str | None = None

    @property
    def is_headless(self) -> bool:
        return self.cluster_ip == "None"

    @property
    def affinity_timeout(self) -> int | None:
        """ClientIP affinity timeout in seconds, or None without ClientIP affinity."""
        if self.session_affinity != "ClientIP":
            return None
        cfg = self.session_affinity_config
        timeout = cfg.client_ip.timeout_seconds if cfg and cfg.client_ip else None
        return timeout if timeout is not None else 10800


class LoadBalancerIngress(KModel):
    ip: str | None = None
    hostname: str | None = None


class LoadBalancerStatus(KModel):
    ingress: list[LoadBalancerIngress] | None = None


class ServiceStatus(KModel):
    load_balancer: LoadBalancerStatus | None = None
    conditions: list[Condition] | None = None


class Service(TopLevel):
    api_version: str | None = "v1"
    kind: str | None = "Service"
    spec: ServiceSpec = Field(default_factory=ServiceSpec)
    status: ServiceStatus | None = None


class EndpointAddress(KModel):
    ip: str
    hostname: str | None = None
    node_name: str | None = None
    target_ref: ObjectReference | None = None


class EndpointPort(KModel):
    port: int
    name: str | None = None
    protocol: str | None = None
    app_protocol: str | None = None


class EndpointSubset(KModel):
    addresses: list[EndpointAddress] | None = None
    not_ready_addresses: list[EndpointAddress] | None = None
    ports: list[EndpointPort] | None = None


class Endpoints(TopLevel):
    api_version: str | None = "v1"
    kind: str | None = "Endpoints"
    subsets: list[EndpointSubset] | None = None


class EndpointConditions(KModel):
    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None


class Endpoint(KModel):
    addresses: list[str]
    conditions: EndpointConditions | None = None
    hostname: str | None = None
    node_name: str | None = None
    target_ref: ObjectReference | None = None
    zone: str | None = None


class EndpointSlicePort(KModel):
    """A slice port; no port number means "all ports" (discovery.k8s.io/v1)."""
    port: int | None = None
    name: str | None = None
    protocol: str | None = None
    app_protocol: str | None = None


class EndpointSlice(TopLevel):
    api_version: str | None = "discovery.k8s.io/v1"
    kind: str | None = "EndpointSlice"
    address_type: str = "IPv4"
    endpoints: list[Endpoint] | None = None
    ports: list[EndpointSlicePort] | None = None
