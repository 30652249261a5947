"""The base of knet's pydantic API models (the mesh kinds, control/models/mesh*.py: objects
that enter from users, where typed validation with field paths is worth its cost; the core
kinds take the fast dict path of control.models.validation instead).

`KModel` fixes the wire contract once: snake_case attributes in Python, Kubernetes'
camelCase on the wire (`pod_ip` <-> `podIP`), either accepted on input, and unknown fields
kept (`extra="allow"`) so a field knet does not model still round-trips. `to_wire()` drops
None (Kubernetes' omitempty) but keeps empty maps/lists a user wrote, like `resources: {}`.
Timestamps stay RFC 3339 strings: knet never does arithmetic on them in the models.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["KModel", "ObjectMeta", "OwnerReference", "TopLevel", "wire_alias"]

# Words Kubernetes spells in capitals inside a camelCase name (podIP, clusterIPs, podCIDR).
_CAPS = {"ip": "IP", "ips": "IPs", "cidr": "CIDR", "cidrs": "CIDRs", "id": "ID",
         "fqdn": "FQDN", "tls": "TLS", "uuid": "UUID"}


def wire_alias(name: str) -> str:
    """`cluster_ips` -> `clusterIPs`; a trailing `_` (Python keywords) is dropped."""
    first, *rest = name.rstrip("_").split("_")
    return first + "".join(_CAPS.get(w, w[:1].upper() + w[1:]) for w in rest)


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
