"""The RBAC authorizer: ClusterRoleBindings, then the RoleBindings of the request's namespace,
grant the rules of the roles they reference to their subjects (k8s.io/kubernetes
plugin/pkg/auth/authorizer/rbac). No rule allows: no opinion, with kube-apiserver's
`RBAC: clusterrole.rbac.authorization.k8s.io "x" not found` reasons for dangling references.

`PolicyCache` holds the four kinds, fed by informers on the API server's own object layer
(`PolicyFeed`), so a change is seen within milliseconds of its write. Key design choice: what
a (user, groups, namespace) may do is resolved once into a tuple of grants and memoised until
the next policy change, so a request costs one dict lookup and a few set lookups.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from control.auth.rbacrules import Rule, Subject, rules_of, subjects_of
from control.auth.types import Attributes, Decision, UserInfo, Verdict
from control.clientbase import Client
from control.informer import Informer

__all__ = ["POLICY_RESOURCES", "Grant", "PolicyCache", "PolicyFeed", "RBACAuthorizer"]

log = logging.getLogger(__name__)
Obj = dict[str, Any]
POLICY_RESOURCES = ("clusterroles", "roles", "clusterrolebindings", "rolebindings")
_GROUP = "rbac.authorization.k8s.io"
_MEMO_MAX = 4096


@dataclass(frozen=True)
class _Binding:
    kind: str                  # RoleBinding or ClusterRoleBinding
    name: str
    namespace: str
    role_kind: str             # Role or ClusterRole
    role_name: str
    subjects: tuple[Subject, ...]

    @classmethod
    def from_wire(cls, kind: str, obj: Obj) -> _Binding:
        md, ref = obj.get("metadata") or {}, obj.get("roleRef") or {}
        return cls(kind, str(md.get("name") or ""), str(md.get("namespace") or ""),
                   str(ref.get("kind") or ""), str(ref.get("name") or ""), subjects_of(obj))


@dataclass(frozen=True)
class Grant:
    """The rules one binding gives one subject: what SubjectAccessReview's reason names."""
    binding: _Binding
    subject: Subject
    rules: tuple[Rule, ...]

    @cached_property
    def reason(self) -> str:
        """Upstream's words: `RBAC: allowed by RoleBinding "name/ns" of Role "r" to User "u"`."""
        b, s = self.binding, self.subject
        name = f"{b.name}/{b.namespace}" if b.namespace else b.name
        who = f"{s.name}/{s.namespace or b.namespace}" if s.kind == "ServiceAccount" else s.name
        return f'RBAC: allowed by {b.kind} "{name}" of {b.role_kind} "{b.role_name}" to ' \
               f'{s.kind} "{who}"'


@dataclass(frozen=True)
class Resolved:
    grants: tuple[Grant, ...]
    errors: tuple[str, ...]

    def rules(self) -> Iterator[Rule]:
        for grant in self.grants:
            yield from grant.rules


class PolicyCache:
    """Roles, ClusterRoles and their bindings by key; `resolve` says what a user may do."""

    def __init__(self) -> None:
        self.cluster_roles: dict[str, tuple[Rule, ...]] = {}
        self.roles: dict[tuple[str, str], tuple[Rule, ...]] = {}
        self.cluster_bindings: dict[str, _Binding] = {}
        self.bindings: dict[str, dict[str, _Binding]] = {}   # namespace -> name -> binding
        self._memo: dict[tuple[str, tuple[str, ...], str], Resolved] = {}
        self.generation = 0

    def __repr__(self) -> str:
        return (f"<PolicyCache {len(self.cluster_roles)} clusterroles, {len(self.roles)} roles, "
                f"{len(self.cluster_bindings)} clusterrolebindings, "
                f"{sum(map(len, self.bindings.values()))} rolebindings>")

    def put(self, resource: str, obj: Obj) -> None:
        md = obj.get("metadata") or {}
        name, ns = str(md.get("name") or ""), str(md.get("namespace") or "")
        if resource == "clusterroles":
            self.cluster_roles[name] = rules_of(obj)
        elif resource == "roles":
            self.roles[(ns, name)] = rules_of(obj)
        elif resource == "clusterrolebindings":
            self.cluster_bindings[name] = _Binding.from_wire("ClusterRoleBinding", obj)
        elif resource == "rolebindings":
            self.bindings.setdefault(ns, {})[name] = _Binding.from_wire("RoleBinding", obj)
        self._changed()

    def remove(self, resource: str, obj: Obj) -> None:
        md = obj.get("metadata") or {}
        name, ns = str(md.get("name") or ""), str(md.get("namespace") or "")
        if resource == "clusterroles":
            self.cluster_roles.pop(name, None)
        elif resource == "roles":
            self.roles.pop((ns, name), None)
        elif resource == "clusterrolebindings":
            self.cluster_bindings.pop(name, None)
        elif resource == "rolebindings":
            self.bindings.get(ns, {}).pop(name, None)
        self._changed()

    def _changed(self) -> None:
        self._memo.clear()
        self.generation += 1

    def resolve(self, user: UserInfo, namespace: str = "") -> Resolved:
        key = (user.name, user.groups, namespace)
        found = self._memo.get(key)
        if found is None:
            if len(self._memo) >= _MEMO_MAX:
                self._memo.clear()
            found = self._memo[key] = self._resolve(user, namespace)
        return found

    def _resolve(self, user: UserInfo, namespace: str) -> Resolved:
        grants: list[Grant] = []
        errors: list[str] = []
        chosen = list(self.cluster_bindings.values())
        if namespace:
            chosen += self.bindings.get(namespace, {}).values()
        for binding in chosen:
            subject = next((s for s in binding.subjects
                            if s.matches(user, binding.namespace)), None)
            if subject is None:
                continue
            rules = self._role_rules(binding, errors)
            if rules is not None:
                grants.append(Grant(binding, subject, rules))
        return Resolved(tuple(grants), tuple(errors))

    def _role_rules(self, binding: _Binding, errors: list[str]) -> tuple[Rule, ...] | None:
        if binding.role_kind == "ClusterRole":
            rules = self.cluster_roles.get(binding.role_name)
            what = f'clusterrole.{_GROUP} "{binding.role_name}"'
        elif binding.role_kind == "Role" and binding.namespace:
            rules = self.roles.get((binding.namespace, binding.role_name))
            what = f'role.{_GROUP} "{binding.role_name}"'
        else:
            rules, what = None, f'{binding.role_kind} "{binding.role_name}"'
        if rules is None:
            errors.append(f"{what} not found")
        return rules


def _reason(errors: tuple[str, ...]) -> str:
    if not errors:
        return ""
    joined = errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"
    return f"RBAC: {joined}"


class RBACAuthorizer:
    def __init__(self, cache: PolicyCache) -> None:
        self.cache = cache

    def __repr__(self) -> str:
        return f"<RBACAuthorizer {self.cache!r}>"

    async def authorize(self, attrs: Attributes) -> Decision:
        return self.decide(attrs)

    def decide(self, attrs: Attributes) -> Decision:
        """`authorize`, synchronously (the escalation checks call it from admission)."""
        resolved = self.cache.resolve(attrs.user, attrs.namespace)
        for grant in resolved.grants:
            for rule in grant.rules:
                if rule.allows(attrs):
                    return Decision(Verdict.ALLOW, grant.reason)
        return Decision(Verdict.NO_OPINION, _reason(resolved.errors))

    def rules_for(self, user: UserInfo, namespace: str) -> tuple[tuple[Rule, ...], str]:
        """Every rule `user` holds in `namespace` and the resolution errors (for
        SelfSubjectRulesReview and escalation checks)."""
        resolved = self.cache.resolve(user, namespace)
        return tuple(resolved.rules()), _reason(resolved.errors)


class PolicyFeed:
    """Four informers keeping a PolicyCache current from `client` (in the API server: a
    LocalClient on its own object layer). `start` returns once the first lists are in."""

    def __init__(self, client: Client, cache: PolicyCache) -> None:
        self.cache = cache
        self.informers = [Informer(client, r) for r in POLICY_RESOURCES]
        for inf in self.informers:
            self._attach(inf)

    def __repr__(self) -> str:
        return f"<PolicyFeed {self.cache!r}>"

    def _attach(self, inf: Informer) -> None:
        resource, cache = inf.resource, self.cache
        inf.add_handler(on_add=lambda obj: cache.put(resource, obj),
                        on_update=lambda _old, new: cache.put(resource, new),
                        on_delete=lambda obj: cache.remove(resource, obj))

    async def start(self, timeout: float = 30.0) -> None:
        for inf in self.informers:
            inf.start()
        for inf in self.informers:
            await inf.wait_synced(timeout=timeout)

    async def stop(self) -> None:
        for inf in self.informers:
            await inf.stop()
