"""rbac.authorization.k8s.io/v1 objects: Role, ClusterRole, RoleBinding, ClusterRoleBinding
(typed reads; admission works on wire dicts, see control.models.rbacvalidation)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from control.models.meta import KModel, TopLevel

__all__ = ["AggregationRule", "ClusterRole", "ClusterRoleBinding", "PolicyRule", "Role",
           "RoleBinding", "RoleRef", "Subject"]

_V1 = "rbac.authorization.k8s.io/v1"


class PolicyRule(KModel):
    verbs: list[str] = Field(default_factory=list)
    api_groups: list[str] | None = None
    resources: list[str] | None = None
    resource_names: list[str] | None = None
    non_resource_urls: list[str] | None = Field(default=None, alias="nonResourceURLs")


class AggregationRule(KModel):
    cluster_role_selectors: list[dict[str, Any]] | None = None


class Role(TopLevel):
    api_version: str | None = _V1
    kind: str | None = "Role"
    rules: list[PolicyRule] | None = None


class ClusterRole(TopLevel):
    api_version: str | None = _V1
    kind: str | None = "ClusterRole"
    rules: list[PolicyRule] | None = None
    aggregation_rule: AggregationRule | None = None


class Subject(KModel):
    kind: str
    name: str
    api_group: str | None = None
    namespace: str | None = None


class RoleRef(KModel):
    api_group: str = "rbac.authorization.k8s.io"
    kind: str = "ClusterRole"
    name: str = ""


class RoleBinding(TopLevel):
    api_version: str | None = _V1
    kind: str | None = "RoleBinding"
    subjects: list[Subject] | None = None
    role_ref: RoleRef = Field(default_factory=RoleRef)


class ClusterRoleBinding(TopLevel):
    api_version: str | None = _V1
    kind: str | None = "ClusterRoleBinding"
    subjects: list[Subject] | None = None
    role_ref: RoleRef = Field(default_factory=RoleRef)
