"""Cluster and configuration objects: Namespace, Node, ConfigMap, Secret, ServiceAccount,
Event, Lease.

Secret `data` holds base64 strings on the wire (as in Kubernetes); `decoded()` gives bytes.
`stringData` is write-only: admission folds it into `data` before storing.
"""

from __future__ import annotations

import base64

from pydantic import Field

from control.models.meta import Condition, KModel, ObjectReference, Quantity, TopLevel

__all__ = [
    "ConfigMap",
    "Event",
    "EventSource",
    "Lease",
    "LeaseSpec",
    "Namespace",
    "NamespaceSpec",
    "NamespaceStatus",
    "Node",
    "NodeAddress",
    "NodeSpec",
    "NodeStatus",
    "NodeSystemInfo",
    "Secret",
    "ServiceAccount",
    "Taint",
]


class NamespaceSpec(KModel):
    finalizers: list[str] | None = None


class NamespaceStatus(KModel):
    phase: str | None = None
    conditions: list[Condition] | None = None


class Namespace(TopLevel):
    api_version: str | None = "v1"
    kind: str | None = "Namespace"
    spec: NamespaceSpec | None = None
    status: NamespaceStatus | None = None


class Taint(KModel):
    key: str
    effect: str
    value: str | None = None
    time_added: str | None = None


class NodeSpec(KModel):
    pod_cidr: str | None = None
    pod_cidrs: list[str] | None = None
    provider_id: str | None = None
    unschedulable: bool | None = None
    taints: list[Taint] | None = None


class NodeAddress(KModel):
    type: str
    address: str


class NodeSystemInfo(KModel):
    kubelet_version: str | None = None
    kube_proxy_version: str | None = None
    os_image: str | None = None
    kernel_version: str | None = None
    container_runtime_version: str | None = None
    architecture: str | None = None
    operating_system: str | None = None
    machine_id: str | None = None
    system_uuid: str | None = None
    boot_id: str | None = None


class NodeStatus(KModel):
    capacity: dict[str, Quantity] | None = None
    allocatable: dict[str, Quantity] | None = None
    conditions: list[Condition] | None = None
    addresses: list[NodeAddress] | None = None
    node_info: NodeSystemInfo | None = None
    phase: str | None = None


class Node(TopLevel):
    api_version: str | None = "v1"
    kind: str | None = "Node"
    spec: NodeSpec = Field(default_factory=NodeSpec)
    status: NodeStatus | None = None

    def address(self, kind: str = "InternalIP") -> str | None:
        for a in (self.status.addresses if self.status else None) or []:
            if a.type == kind:
                return a.address
        return None


class ConfigMap(TopLevel):
    api_version: str | None = "v1"
    kind: str | None = "ConfigMap"
    data: dict[str, str] | None = None
    binary_data: dict[str, str] | None = None
    immutable: bool | None = None


class Secret(TopLevel):
    api_version: str | None = "v1"
    kind: str | None = "Secret"
    type: str | None = None
    data: dict[str, str] | None = None
    string_data: dict[str, str] | None = None
    immutable: bool | None = None

    def decoded(self) -> dict[str, bytes]:
        """The secret's values as bytes (data is base64 on the wire)."""
        return {k: base64.b64decode(v) for k, v in (self.data or {}).items()}


class ServiceAccount(TopLevel):
    api_version: str | None = "v1"
    kind: str | None = "ServiceAccount"
    secrets: list[ObjectReference] | None = None
    automount_service_account_token: bool | None = None


class EventSource(KModel):
    component: str | None = None
    host: str | None = None


class Event(TopLevel):
    api_version: str | None = "v1"
    kind: str | None = "Event"
    involved_object: ObjectReference = Field(default_factory=ObjectReference)
    reason: str | None = None
    message: str | None = None
    source: EventSource | None = None
    first_timestamp: str | None = None
    last_timestamp: str | None = None
    event_time: str | None = None
    count: int | None = None
    type: str | None = None
    action: str | None = None
    reporting_component: str | None = None
    reporting_instance: str | None = None
    related: ObjectReference | None = None


class LeaseSpec(KModel):
    holder_identity: str | None = None
    lease_duration_seconds: int | None = None
    acquire_time: str | None = None
    renew_time: str | None = None
    lease_transitions: int | None = None


class Lease(TopLevel):
    api_version: str | None = "coordination.k8s.io/v1"
    kind: str | None = "Lease"
    spec: LeaseSpec = Field(default_factory=LeaseSpec)
