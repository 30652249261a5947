"""RBAC's pure parts: a PolicyRule matched against request `Attributes`, subjects matched
against a user, and rule coverage for escalation checks (k8s.io/kubernetes
pkg/apis/rbac/v1/evaluation_helpers.go and pkg/registry/rbac/validation).

    rule = Rule.from_wire({"verbs": ["get"], "apiGroups": [""], "resources": ["pods/log"]})
    rule.allows(attrs)      # verb, group, resource (with `*` and `*/scale`), name, URL

Key design choice: rules are parsed once into frozensets when a role is cached, so a request
costs set lookups only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from control.auth.types import Attributes, UserInfo

__all__ = ["Rule", "Subject", "covers", "rules_of", "subjects_of"]

STAR = "*"
SA_PREFIX = "system:serviceaccount:"


@dataclass(frozen=True)
class Rule:
    verbs: frozenset[str]
    api_groups: frozenset[str] = frozenset()
    resources: frozenset[str] = frozenset()
    resource_names: frozenset[str] = frozenset()
    non_resource_urls: tuple[str, ...] = ()

    @classmethod
    def from_wire(cls, rule: Mapping[str, Any]) -> Rule:
        def strings(key: str) -> list[str]:
            value = rule.get(key) or []
            return [str(v) for v in value] if isinstance(value, list) else []
        return cls(frozenset(strings("verbs")), frozenset(strings("apiGroups")),
                   frozenset(strings("resources")), frozenset(strings("resourceNames")),
                   tuple(strings("nonResourceURLs")))

    def to_wire(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {"verbs": sorted(self.verbs)}
        if self.api_groups or self.resources:
            out["apiGroups"] = sorted(self.api_groups)
            out["resources"] = sorted(self.resources)
        if self.resource_names:
            out["resourceNames"] = sorted(self.resource_names)
        if self.non_resource_urls:
            out["nonResourceURLs"] = list(self.non_resource_urls)
        return out

    def allows(self, attrs: Attributes) -> bool:
        if attrs.verb not in self.verbs and STAR not in self.verbs:
            return False
        if not attrs.resource_request:
            return self.url_matches(attrs.path)
        if attrs.api_group not in self.api_groups and STAR not in self.api_groups:
            return False
        if not self.resource_matches(attrs.resource, attrs.subresource):
            return False
        return not self.resource_names or attrs.name in self.resource_names

    def resource_matches(self, resource: str, subresource: str) -> bool:
        res = self.resources
        if STAR in res:
            return True
        if subresource:
            return f"{resource}/{subresource}" in res or f"*/{subresource}" in res
        return resource in res

    def url_matches(self, path: str) -> bool:
        for url in self.non_resource_urls:
            if url == STAR or url == path or (url.endswith(STAR) and path.startswith(url[:-1])):
                return True
        return False


def rules_of(role: Mapping[str, Any]) -> tuple[Rule, ...]:
    rules = role.get("rules") or []
    return tuple(Rule.from_wire(r) for r in rules if isinstance(r, dict))


@dataclass(frozen=True)
class Subject:
    kind: str
    name: str
    namespace: str = ""

    def matches(self, user: UserInfo, binding_namespace: str = "") -> bool:
        if self.kind == "User":
            return user.name == self.name
        if self.kind == "Group":
            return self.name in user.groups
        if self.kind == "ServiceAccount":
            ns = self.namespace or binding_namespace
            return user.name == f"{SA_PREFIX}{ns}:{self.name}"
        return False


def subjects_of(binding: Mapping[str, Any]) -> tuple[Subject, ...]:
    out = []
    for s in binding.get("subjects") or []:
        if isinstance(s, dict):
            out.append(Subject(str(s.get("kind") or ""), str(s.get("name") or ""),
                               str(s.get("namespace") or "")))
    return tuple(out)


def _one_covers(owner: Rule, verb: str, group: str, resource: str, name: str) -> bool:
    if verb not in owner.verbs and STAR not in owner.verbs:
        return False
    if group not in owner.api_groups and STAR not in owner.api_groups:
        return False
    res = owner.resources
    if not (STAR in res or resource in res
            or ("/" in resource and "*/" + resource.partition("/")[2] in res)):
        return False
    return not owner.resource_names or (bool(name) and name in owner.resource_names)


def _url_covered(owned: Iterable[Rule], verb: str, url: str) -> bool:
    for r in owned:
        if verb not in r.verbs and STAR not in r.verbs:
            continue
        for have in r.non_resource_urls:
            if have == STAR or have == url or (
                    have.endswith(STAR) and url.startswith(have[:-1])
                    and (not url.endswith(STAR) or len(url) >= len(have))):
                return True
    return False


def covers(owned: tuple[Rule, ...], wanted: Rule) -> bool:
    """Whether `owned` grants everything `wanted` does (upstream's Covers: each atomic
    verb x group x resource x name of `wanted` is allowed by some owned rule)."""
    for verb in wanted.verbs:
        for url in wanted.non_resource_urls:
            if not _url_covered(owned, verb, url):
                return False
        for group in wanted.api_groups:
            for resource in wanted.resources:
                for name in wanted.resource_names or {""}:
                    if not any(_one_covers(o, verb, group, resource, name) for o in owned):
                        return False
    return True
