"""authorization.k8s.io/v1 reviews, answered by the API server's own authorizer chain:
SubjectAccessReview (may this user...?), LocalSubjectAccessReview (the same, in the
namespace of the path), SelfSubjectAccessReview (may I...? `kubectl auth can-i`) and
SelfSubjectRulesReview (what may I do in this namespace? `kubectl auth can-i --list`).

`access_reviews(authz, rbac)` returns the handlers by plural for `Settings.reviews`.
"""

from __future__ import annotations

from typing import Any

from control.api.reviews import ReviewContext, ReviewHandler
from control.auth.rbac import RBACAuthorizer
from control.auth.types import Attributes, Authorizer, UserInfo, Verdict
from control.models.fielderrors import FieldErrors

__all__ = ["access_reviews"]

Obj = dict[str, Any]
_GROUP = "authorization.k8s.io"


def _attributes(errs: FieldErrors, user: UserInfo, spec: Obj) -> Attributes:
    res, non = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if res and non:
        errs.invalid("spec.resourceAttributes", non,
                     "cannot be specified in combination with resourceAttributes")
    elif not res and not non:
        errs.invalid("spec.resourceAttributes", None,
                     "exactly one of nonResourceAttributes or resourceAttributes must be "
                     "specified")
    if isinstance(non, dict) and not res:
        return Attributes(user=user, verb=str(non.get("verb") or ""), resource_request=False,
                          path=str(non.get("path") or ""))
    res = res if isinstance(res, dict) else {}
    return Attributes(user=user, verb=str(res.get("verb") or ""),
                      api_group=str(res.get("group") or ""),
                      api_version=str(res.get("version") or ""),
                      resource=str(res.get("resource") or ""),
                      subresource=str(res.get("subresource") or ""),
                      namespace=str(res.get("namespace") or ""), name=str(res.get("name") or ""))


def _spec(body: Obj) -> Obj:
    spec = body.get("spec")
    return spec if isinstance(spec, dict) else {}


def _subject(errs: FieldErrors, spec: Obj) -> UserInfo:
    name, groups = str(spec.get("user") or ""), spec.get("groups") or []
    if not name and not groups:
        errs.invalid("spec.user", name, "at least one of user or group must be specified")
    extra = spec.get("extra") or {}
    return UserInfo(name, uid=str(spec.get("uid") or ""),
                    groups=tuple(str(g) for g in groups),
                    extra={str(k): tuple(v) for k, v in extra.items() if isinstance(v, list)})


def access_reviews(authz: Authorizer, rbac: RBACAuthorizer) -> dict[str, ReviewHandler]:
    async def status(attrs: Attributes) -> Obj:
        decision = await authz.authorize(attrs)
        out: Obj = {"allowed": decision.allowed}
        if decision.verdict is Verdict.DENY:
            out["denied"] = True
        if decision.reason:
            out["reason"] = decision.reason
        return out

    def done(errs: FieldErrors, kind: str) -> None:
        errs.raise_if_any(kind=kind, group=_GROUP, name="")

    async def subject_access(ctx: ReviewContext, body: Obj) -> Obj:
        errs, spec = FieldErrors(), _spec(body)
        attrs = _attributes(errs, _subject(errs, spec), spec)
        done(errs, "SubjectAccessReview")
        return await status(attrs)

    async def local_subject_access(ctx: ReviewContext, body: Obj) -> Obj:
        errs, spec = FieldErrors(), _spec(body)
        attrs = _attributes(errs, _subject(errs, spec), spec)
        md = body.get("metadata") or {}
        if md.get("namespace") not in (None, "", ctx.namespace):
            errs.invalid("metadata.namespace", md.get("namespace"),
                         "must match the namespace of the request path")
        if not attrs.resource_request:
            errs.invalid("spec.nonResourceAttributes", spec.get("nonResourceAttributes"),
                         "disallowed on this kind of request")
        elif attrs.namespace != (ctx.namespace or ""):
            errs.invalid("spec.resourceAttributes.namespace", attrs.namespace,
                         "must match metadata.namespace")
        done(errs, "LocalSubjectAccessReview")
        return await status(attrs)

    async def self_subject_access(ctx: ReviewContext, body: Obj) -> Obj:
        errs, spec = FieldErrors(), _spec(body)
        attrs = _attributes(errs, ctx.user, spec)
        done(errs, "SelfSubjectAccessReview")
        return await status(attrs)

    async def self_subject_rules(ctx: ReviewContext, body: Obj) -> Obj:
        namespace = str(_spec(body).get("namespace") or "")
        rules, errors = rbac.rules_for(ctx.user, namespace)
        resource_rules: list[Obj] = []
        non_resource_rules: list[Obj] = []
        for rule in rules:
            wire = rule.to_wire()
            if rule.non_resource_urls:
                non_resource_rules.append({"verbs": wire["verbs"],
                                           "nonResourceURLs": wire["nonResourceURLs"]})
            else:
                resource_rules.append(wire)
        out: Obj = {"resourceRules": resource_rules, "nonResourceRules": non_resource_rules,
                    "incomplete": bool(errors)}
        if errors:
            out["evaluationError"] = errors
        return out

    return {"subjectaccessreviews": subject_access,
            "localsubjectaccessreviews": local_subject_access,
            "selfsubjectaccessreviews": self_subject_access,
            "selfsubjectrulesreviews": self_subject_rules}
