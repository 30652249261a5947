"""Istio security.istio.io/v1 PeerAuthentication and AuthorizationPolicy as pydantic v2 models.

The fields knet's mesh acts on are modelled (mtls mode and portLevelMtls; action, selector,
targetRefs, rules from.source / to.operation / when) and checked as Istio's validation
webhook checks them (selector and targetRefs are exclusive, CUSTOM needs a provider, ports
are numbers, ipBlocks are addresses or CIDRs); the rest round-trips (`extra="allow"`,
warned by the validator as unknown fields).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from control.models.meta import KModel, TopLevel

__all__ = ["AuthorizationPolicy", "Operation", "PeerAuthentication", "Rule", "Source"]

GROUP = "security.istio.io"
MtlsMode = Literal["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]


class WorkloadSelector(KModel):
    match_labels: dict[str, str] = Field(default_factory=dict)


class MutualTLS(KModel):
    mode: MtlsMode = "UNSET"


class PeerAuthenticationSpec(KModel):
    selector: WorkloadSelector | None = None
    mtls: MutualTLS | None = None
    port_level_mtls: dict[str, MutualTLS] = Field(default_factory=dict)

    @field_validator("port_level_mtls")
    @classmethod
    def _ports(cls, v: dict[str, MutualTLS]) -> dict[str, MutualTLS]:
        for port in v:
            if not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError(f"port must be in the range 1..65535, got {port!r}")
        return v

    @model_validator(mode="after")
    def _port_level_needs_selector(self) -> PeerAuthenticationSpec:
        if self.port_level_mtls and self.selector is None:
            raise ValueError("portLevelMtls requires a workload selector")
        return self


class PeerAuthentication(TopLevel):
    api_version: str | None = "security.istio.io/v1"
    kind: str | None = "PeerAuthentication"
    spec: PeerAuthenticationSpec | None = None


def _ip_blocks(v: list[str]) -> list[str]:
    for block in v:
        try:
            ipaddress.ip_network(block, strict=False)
        except ValueError:
            raise ValueError(f"invalid IP address or CIDR {block!r}") from None
    return v


def _ports(v: list[str]) -> list[str]:
    for port in v:
        if not str(port).isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"invalid port {port!r}: must be a number in 0..65535")
    return [str(p) for p in v]


class Source(KModel):
    principals: list[str] = Field(default_factory=list)
    not_principals: list[str] = Field(default_factory=list)
    request_principals: list[str] = Field(default_factory=list)
    not_request_principals: list[str] = Field(default_factory=list)
    namespaces: list[str] = Field(default_factory=list)
    not_namespaces: list[str] = Field(default_factory=list)
    ip_blocks: list[str] = Field(default_factory=list)
    not_ip_blocks: list[str] = Field(default_factory=list, alias="notIpBlocks")
    remote_ip_blocks: list[str] = Field(default_factory=list, alias="remoteIpBlocks")
    not_remote_ip_blocks: list[str] = Field(default_factory=list, alias="notRemoteIpBlocks")

    _blocks = field_validator("ip_blocks", "not_ip_blocks", "remote_ip_blocks",
                              "not_remote_ip_blocks")(_ip_blocks)


class Operation(KModel):
    hosts: list[str] = Field(default_factory=list)
    not_hosts: list[str] = Field(default_factory=list)
    ports: list[str | int] = Field(default_factory=list)
    not_ports: list[str | int] = Field(default_factory=list)
    methods: list[str] = Field(default_factory=list)
    not_methods: list[str] = Field(default_factory=list)
    paths: list[str] = Field(default_factory=list)
    not_paths: list[str] = Field(default_factory=list)

    _port_numbers = field_validator("ports", "not_ports")(_ports)


class From(KModel):
    source: Source


class To(KModel):
    operation: Operation


class Condition(KModel):
    key: Annotated[str, Field(min_length=1)]
    values: list[str] = Field(default_factory=list)
    not_values: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _some(self) -> Condition:
        if not self.values and not self.not_values:
            raise ValueError("at least one of values or notValues must be set for key "
                             f"{self.key!r}")
        return self


class Rule(KModel):
    from_: list[From] = Field(default_factory=list, alias="from")
    to: list[To] = Field(default_factory=list)
    when: list[Condition] = Field(default_factory=list)


class PolicyTargetReference(KModel):
    group: str = ""
    kind: Annotated[str, Field(min_length=1)]
    name: Annotated[str, Field(min_length=1)]
    namespace: str | None = None


class AuthorizationPolicySpec(KModel):
    selector: WorkloadSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: list[PolicyTargetReference] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    action: Literal["ALLOW", "DENY", "AUDIT", "CUSTOM"] = "ALLOW"
    provider: dict[str, str] | None = None

    @model_validator(mode="after")
    def _istio_checks(self) -> AuthorizationPolicySpec:
        if self.selector is not None and (self.target_ref or self.target_refs):
            raise ValueError("only one of targetRefs or workload selector can be set")
        if self.target_ref is not None and self.target_refs:
            raise ValueError("only one of targetRef or targetRefs can be set")
        if self.action == "CUSTOM" and not self.provider:
            raise ValueError("a provider must be set for the CUSTOM action")
        if self.action != "CUSTOM" and self.provider:
            raise ValueError("a provider must only be set with the CUSTOM action")
        return self

    def targets(self) -> list[PolicyTargetReference]:
        return self.target_refs or ([self.target_ref] if self.target_ref else [])


class AuthorizationPolicy(TopLevel):
    api_version: str | None = "security.istio.io/v1"
    kind: str | None = "AuthorizationPolicy"
    spec: AuthorizationPolicySpec = Field(default_factory=AuthorizationPolicySpec)
