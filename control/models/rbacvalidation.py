"""Validation of rbac.authorization.k8s.io/v1 objects with kube-apiserver's messages
(pkg/apis/rbac/validation): rules need verbs and either resources with API groups or
non-resource URLs (never both, never URLs in a namespaced Role); subjects are User, Group or
ServiceAccount with the right apiGroup; a binding's roleRef is immutable.

Names are path segments, not DNS names (`system:node` is valid): `rbac_name` is the check
validation.py applies to these kinds' metadata.name.
"""

from __future__ import annotations

from typing import Any

from control.models.fielderrors import FieldErrors
from control.models.names import dns1123_subdomain

__all__ = ["RBAC_KINDS", "rbac_name", "validate_binding_update", "validate_cluster_role",
           "validate_cluster_role_binding", "validate_role", "validate_role_binding"]

Obj = dict[str, Any]
GROUP = "rbac.authorization.k8s.io"
RBAC_KINDS = frozenset({"roles", "clusterroles", "rolebindings", "clusterrolebindings"})


def rbac_name(value: str) -> tuple[str, ...]:
    """apimachinery's path.IsValidPathSegmentName."""
    if value in (".", ".."):
        return (f"may not be '{value}'",)
    return tuple(f"may not contain '{c}'" for c in "/%" if c in value)


class _Go:
    """A value shown as Go's %#v, the way apimachinery prints structs and slices in errors."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _go_strings(items: list[str]) -> _Go:
    return _Go("[]string{" + ", ".join(f'"{i}"' for i in items) + "}")


def _go_ref(ref: Any) -> _Go:
    ref = ref if isinstance(ref, dict) else {}
    return _Go(f'rbac.RoleRef{{APIGroup:"{ref.get("apiGroup") or ""}", '
               f'Kind:"{ref.get("kind") or ""}", Name:"{ref.get("name") or ""}"}}')


def _strings(errs: FieldErrors, field: str, value: Any) -> list[str]:
    items = errs.list_of(field, value)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            errs.type_error(f"{field}[{i}]", item, "a string")
    return [i for i in items if isinstance(i, str)]


def _rule(errs: FieldErrors, path: str, rule: Any, namespaced: bool) -> None:
    if not isinstance(rule, dict):
        errs.type_error(path, rule, "an object")
        return
    verbs = _strings(errs, f"{path}.verbs", rule.get("verbs"))
    groups = _strings(errs, f"{path}.apiGroups", rule.get("apiGroups"))
    resources = _strings(errs, f"{path}.resources", rule.get("resources"))
    names = _strings(errs, f"{path}.resourceNames", rule.get("resourceNames"))
    urls = _strings(errs, f"{path}.nonResourceURLs", rule.get("nonResourceURLs"))
    if not verbs:
        errs.required(f"{path}.verbs", "verbs must contain at least one value")
    if urls:
        if namespaced:
            errs.invalid(f"{path}.nonResourceURLs", _go_strings(urls),
                         "namespaced rules cannot apply to non-resource URLs")
        if groups or resources or names:
            errs.invalid(f"{path}.nonResourceURLs", _go_strings(urls),
                         "rules cannot apply to both regular resources and non-resource URLs")
        return
    if not groups:
        errs.required(f"{path}.apiGroups", "resource rules must supply at least one api group")
    if not resources:
        errs.required(f"{path}.resources", "resource rules must supply at least one resource")


def _rules(errs: FieldErrors, obj: Obj, namespaced: bool) -> None:
    for i, rule in enumerate(errs.list_of("rules", obj.get("rules"))):
        _rule(errs, f"rules[{i}]", rule, namespaced)


def validate_role(errs: FieldErrors, obj: Obj) -> None:
    _rules(errs, obj, namespaced=True)


def validate_cluster_role(errs: FieldErrors, obj: Obj) -> None:
    _rules(errs, obj, namespaced=False)
    agg = obj.get("aggregationRule")
    if agg is None:
        return
    if not isinstance(agg, dict):
        errs.type_error("aggregationRule", agg, "an object")
        return
    selectors = errs.list_of("aggregationRule.clusterRoleSelectors",
                             agg.get("clusterRoleSelectors"))
    if not selectors:
        errs.required("aggregationRule.clusterRoleSelectors",
                      "at least one clusterRoleSelector required if aggregationRule is non-nil")
    for i, sel in enumerate(selectors):
        if not isinstance(sel, dict):
            errs.type_error(f"aggregationRule.clusterRoleSelectors[{i}]", sel, "an object")


def _subject(errs: FieldErrors, path: str, subject: Any, namespaced: bool) -> None:
    if not isinstance(subject, dict):
        errs.type_error(path, subject, "an object")
        return
    kind, name = subject.get("kind"), subject.get("name")
    group = subject.get("apiGroup") or ""
    if not name:
        errs.required(f"{path}.name")
    if kind == "ServiceAccount":
        if name:
            errs.names(f"{path}.name", name, dns1123_subdomain)
        if group:
            errs.not_supported(f"{path}.apiGroup", group, ("",))
        if not namespaced and not subject.get("namespace"):
            errs.required(f"{path}.namespace")
    elif kind in ("User", "Group"):
        if group != GROUP:
            errs.not_supported(f"{path}.apiGroup", group, (GROUP,))
    else:
        errs.not_supported(f"{path}.kind", kind, ("ServiceAccount", "User", "Group"))


def _default_subjects(obj: Obj) -> None:
    for subject in obj.get("subjects") or []:
        if isinstance(subject, dict) and subject.get("kind") in ("User", "Group"):
            subject.setdefault("apiGroup", GROUP)


def _binding(errs: FieldErrors, obj: Obj, kinds: tuple[str, ...], namespaced: bool) -> None:
    _default_subjects(obj)
    ref = obj.get("roleRef")
    if not isinstance(ref, dict):
        errs.required("roleRef") if ref is None else errs.type_error("roleRef", ref,
                                                                     "an object")
        ref = {}
    if ref.get("apiGroup") != GROUP:
        errs.not_supported("roleRef.apiGroup", ref.get("apiGroup") or "", (GROUP,))
    if ref.get("kind") not in kinds:
        errs.not_supported("roleRef.kind", ref.get("kind") or "", kinds)
    if not ref.get("name"):
        errs.required("roleRef.name")
    else:
        errs.names("roleRef.name", ref["name"], rbac_name)
    for i, subject in enumerate(errs.list_of("subjects", obj.get("subjects"))):
        _subject(errs, f"subjects[{i}]", subject, namespaced)


def validate_role_binding(errs: FieldErrors, obj: Obj) -> None:
    _binding(errs, obj, ("Role", "ClusterRole"), namespaced=True)


def validate_cluster_role_binding(errs: FieldErrors, obj: Obj) -> None:
    _binding(errs, obj, ("ClusterRole",), namespaced=False)


def validate_binding_update(errs: FieldErrors, new: Obj, old: Obj) -> None:
    if new.get("roleRef") != old.get("roleRef"):
        errs.invalid("roleRef", _go_ref(new.get("roleRef")), "cannot change roleRef")
