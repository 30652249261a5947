"""The base of every API model and the metadata types all kinds share.

`KModel` fixes the wire contract once: snake_case attributes in Python, Kubernetes'
camelCase on the wire (`pod_ip` <-> `podIP`), either accepted on input, and unknown fields
kept (`extra="allow"`) so a field knet does not model still round-trips. `to_wire()` drops
None (Kubernetes' omitempty) but keeps empty maps/lists a user wrote, like `resources: {}`.
Timestamps stay RFC 3339 strings: knet never does arithmetic on them in the models.
"""

from __future__ import annotations

from typing import Any, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Condition",
    "IntOrString",
    "KModel",
    "LabelSelector",
    "LabelSelectorRequirement",
    "ListMeta",
    "ObjectMeta",
    "ObjectReference",
    "OwnerReference",
    "Quantity",
    "TopLevel",
    "wire_alias",
]

# Words Kubernetes spells in capitals inside a camelCase name (podIP, clusterIPs, podCIDR).
_CAPS = {"ip": "IP", "ips": "IPs", "cidr": "CIDR", "cidrs": "CIDRs", "id": "ID",
         "fqdn": "FQDN", "tls": "TLS", "uuid": "UUID"}


def wire_alias(name: str) -> str:
    """`cluster_ips` -> `clusterIPs`; a trailing `_` (Python keywords) is dropped."""
    first, *rest = name.rstrip("_").split("_")
    return first + "".join(_CAPS.get(w, w[:1].upper() + w[1:]) for w in rest)


IntOrString = int | str
Quantity = int | float | str

M = TypeVar("M", bound="KModel")


class KModel(BaseModel):
    model_config = ConfigDict(alias_generator=wire_alias, populate_by_name=True,
                              extra="allow", protected_namespaces=())

    def to_wire(self) -> dict[str, Any]:
        """The object as Kubernetes JSON: camelCase keys, no nulls, unknown fields kept."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> Self:
        return cls.model_validate(obj)


class OwnerReference(KModel):
    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool | None = None
    block_owner_deletion: bool | None = None


class ObjectMeta(KModel):
    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    deletion_grace_period_seconds: int | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    owner_references: list[OwnerReference] | None = None
    finalizers: list[str] | None = None
    managed_fields: list[dict[str, Any]] | None = None

    def controller_ref(self) -> OwnerReference | None:
        for ref in self.owner_references or []:
            if ref.controller:
                return ref
        return None


class ListMeta(KModel):
    resource_version: str | None = None
    continue_: str | None = None
    remaining_item_count: int | None = None


class LabelSelectorRequirement(KModel):
    key: str
    operator: str
    values: list[str] | None = None


class LabelSelector(KModel):
    match_labels: dict[str, str] | None = None
    match_expressions: list[LabelSelectorRequirement] | None = None


class ObjectReference(KModel):
    kind: str | None = None
    namespace: str | None = None
    name: str | None = None
    uid: str | None = None
    api_version: str | None = None
    resource_version: str | None = None
    field_path: str | None = None


class Condition(KModel):
    """The common shape of status conditions (pods, nodes, deployments, ...)."""
    type: str
    status: str
    reason: str | None = None
    message: str | None = None
    last_transition_time: str | None = None
    last_update_time: str | None = None
    last_probe_time: str | None = None
    last_heartbeat_time: str | None = None
    observed_generation: int | None = None


class TopLevel(KModel):
    """A top-level API object: apiVersion, kind, metadata."""
    api_version: str | None = None
    kind: str | None = None
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    @property
    def key(self) -> str:
        """`namespace/name` (or `name` for cluster-scoped objects), for log messages."""
        ns = self.metadata.namespace
        return f"{ns}/{self.metadata.name}" if ns else str(self.metadata.name)
