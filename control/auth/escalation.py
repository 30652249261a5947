"""RBAC escalation prevention (pkg/registry/rbac: policybased storage, ConfirmNoEscalation):
nobody grants what they do not hold. Creating or changing a Role/ClusterRole needs every one
of its rules to be held by the writer, or the `escalate` verb on it; creating a binding needs
the rules of the role it references, or the `bind` verb on that role. system:masters is
exempt, as are the API server's own writes (bootstrap policy, aggregation).

It runs inside admission (`EscalationGuard.admit` wraps the usual admit), where the final
object is known even for patches; the writer is the request's user, which the API middleware
puts in `ACTING_USER` for the duration of the request.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from control.auth.rbac import RBACAuthorizer
from control.auth.rbacrules import Rule, covers, rules_of
from control.auth.types import SYSTEM_MASTERS, Attributes, UserInfo
from control.errors import Forbidden, NotFound

__all__ = ["ACTING_USER", "EscalationGuard"]

Obj = dict[str, Any]
Admit = Callable[..., tuple[Obj, list[str]]]
GROUP = "rbac.authorization.k8s.io"
# who is writing, set by the API middleware per request (None: the API server itself)
ACTING_USER: ContextVar[UserInfo | None] = ContextVar("knet_acting_user", default=None)
_ROLES = {"roles", "clusterroles"}
_BINDINGS = {"rolebindings", "clusterrolebindings"}


def _q(items: Any) -> str:
    """Go's %q of a []string: ["a" "b"]."""
    return "[" + " ".join(f'"{i}"' for i in items) + "]"


def _missing(owned: tuple[Rule, ...], wanted: tuple[Rule, ...]) -> list[str]:
    """The atomic rules of `wanted` not covered by `owned`, compacted by verb, in upstream's
    CompactString form."""
    by_target: dict[tuple[str, str, str, str], list[str]] = {}
    for rule in wanted:
        for verb in sorted(rule.verbs):
            for url in rule.non_resource_urls:
                if not covers(owned, Rule(frozenset({verb}), non_resource_urls=(url,))):
                    by_target.setdefault(("", "", "", url), []).append(verb)
            for group in sorted(rule.api_groups):
                for res in sorted(rule.resources):
                    for name in sorted(rule.resource_names) or [""]:
                        atom = Rule(frozenset({verb}), frozenset({group}), frozenset({res}),
                                    frozenset({name}) if name else frozenset())
                        if not covers(owned, atom):
                            by_target.setdefault((group, res, name, ""), []).append(verb)
    out = []
    for (group, res, name, url), verbs in by_target.items():
        if url:
            out.append(f"{{NonResourceURLs:{_q([url])}, Verbs:{_q(verbs)}}}")
            continue
        names = f", ResourceNames:{_q([name])}" if name else ""
        out.append(f"{{APIGroups:{_q([group])}, Resources:{_q([res])}{names}, "
                   f"Verbs:{_q(verbs)}}}")
    return out


class EscalationGuard:
    def __init__(self, rbac: RBACAuthorizer, admit: Admit) -> None:
        self.rbac = rbac
        self.inner = admit

    def __repr__(self) -> str:
        return f"<EscalationGuard {self.rbac!r}>"

    def admit(self, resource: str, obj: Obj, *, old: Obj | None = None,
              **kwargs: Any) -> tuple[Obj, list[str]]:
        out, warnings = self.inner(resource, obj, old=old, **kwargs)
        user = ACTING_USER.get()
        if user is not None and SYSTEM_MASTERS not in user.groups:
            if resource in _ROLES:
                self._check_role(user, resource, out, old)
            elif resource in _BINDINGS:
                self._check_binding(user, resource, out, old)
        return out, warnings

    def _allowed(self, user: UserInfo, verb: str, resource: str, namespace: str,
                 name: str) -> bool:
        attrs = Attributes(user=user, verb=verb, api_group=GROUP, api_version="v1",
                           resource=resource, namespace=namespace, name=name)
        return self.rbac.decide(attrs).allowed

    def _refuse(self, user: UserInfo, resource: str, name: str, missing: list[str],
                errors: str) -> None:
        msg = (f'{resource}.{GROUP} "{name}" is forbidden: user "{user.name}" '
               f"(groups={_q(user.groups)}) is attempting to grant RBAC permissions not "
               "currently held:\n" + "\n".join(missing))
        if errors:
            msg += f"; resolution errors: [{errors.removeprefix('RBAC: ')}]"
        raise Forbidden(msg, kind=resource, name=name, group=GROUP)

    def _check_role(self, user: UserInfo, resource: str, role: Obj, old: Obj | None) -> None:
        md = role.get("metadata") or {}
        name, ns = str(md.get("name") or ""), str(md.get("namespace") or "")
        if old is not None and old.get("rules") == role.get("rules") \
                and old.get("aggregationRule") == role.get("aggregationRule"):
            return
        if self._allowed(user, "escalate", resource, ns, name):
            return
        if role.get("aggregationRule") is not None:
            raise Forbidden(f'{resource}.{GROUP} "{name}" is forbidden: must have '
                            "cluster-admin privileges to use the aggregationRule",
                            kind=resource, name=name, group=GROUP)
        owned, errors = self.rbac.rules_for(user, ns)
        missing = _missing(owned, rules_of(role))
        if missing:
            self._refuse(user, resource, name, missing, errors)

    def _check_binding(self, user: UserInfo, resource: str, binding: Obj,
                       old: Obj | None) -> None:
        if old is not None and old.get("roleRef") == binding.get("roleRef"):
            return
        md, ref = binding.get("metadata") or {}, binding.get("roleRef") or {}
        name, ns = str(md.get("name") or ""), str(md.get("namespace") or "")
        kind, role_name = ref.get("kind"), str(ref.get("name") or "")
        role_resource = "clusterroles" if kind == "ClusterRole" else "roles"
        if self._allowed(user, "bind", role_resource, ns, role_name):
            return
        cache = self.rbac.cache
        rules = cache.cluster_roles.get(role_name) if kind == "ClusterRole" \
            else cache.roles.get((ns, role_name))
        if rules is None:
            raise NotFound(f'{role_resource}.{GROUP} "{role_name}" not found',
                           kind=role_resource, name=role_name, group=GROUP)
        owned, errors = self.rbac.rules_for(user, ns)
        missing = _missing(owned, rules)
        if missing:
            self._refuse(user, resource, name, missing, errors)
