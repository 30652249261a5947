"""The mesh kinds (Gateway API + Istio) as knet's clients name them, and knet's semantic
checks of them. The kinds are CustomResourceDefinitions from their official definitions
(control/crds), so their schema, pruning, defaulting, printer columns and `kubectl explain`
come from the generic CRD machinery (control.api.crd); what those schemas cannot express
(CEL rules the machinery does not run, regexes that compile, durations, exactly-one rules,
unique names) is checked here by the pydantic models of meshgateway.py / meshistio.py /
meshsecurity.py after the schema passed, each model error turned into a kube-apiserver
cause: `spec.http[0].match[0].uri: Invalid value: ...: exactly one of exact, prefix or regex
must be set`.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from control.models.fielderrors import FieldErrors
from control.models.meshgateway import Gateway, GatewayClass, HTTPRoute, ReferenceGrant
from control.models.meshistio import DestinationRule, VirtualService
from control.models.meshsecurity import AuthorizationPolicy, PeerAuthentication
from control.models.meta import TopLevel
from control.models.resources import ResourceInfo

__all__ = ["MESH_CHECKS", "MESH_MODELS", "MESH_RESOURCES", "check_mesh", "field_path"]

Obj = dict[str, Any]

_GW, _NET, _SEC = "gateway.networking.k8s.io", "networking.istio.io", "security.istio.io"
# The kinds as knet's own clients name them (all at v1): served by the CRDs of control/crds,
# so not built into the API server's registry; control.client knows them without discovery.
MESH_RESOURCES: tuple[ResourceInfo, ...] = tuple(
    ResourceInfo(kind, plural, group, "v1", namespaced, custom=True,
                 subresources=("status",) if status else ())
    for kind, plural, group, namespaced, status in (
        ("GatewayClass", "gatewayclasses", _GW, False, True),
        ("Gateway", "gateways", _GW, True, True),
        ("HTTPRoute", "httproutes", _GW, True, True),
        ("ReferenceGrant", "referencegrants", _GW, True, False),
        ("VirtualService", "virtualservices", _NET, True, True),
        ("DestinationRule", "destinationrules", _NET, True, True),
        ("PeerAuthentication", "peerauthentications", _SEC, True, True),
        ("AuthorizationPolicy", "authorizationpolicies", _SEC, True, True)))

MESH_MODELS: dict[str, type[TopLevel]] = {
    "httproutes": HTTPRoute, "gateways": Gateway, "gatewayclasses": GatewayClass,
    "referencegrants": ReferenceGrant, "virtualservices": VirtualService,
    "destinationrules": DestinationRule, "peerauthentications": PeerAuthentication,
    "authorizationpolicies": AuthorizationPolicy,
}


def field_path(loc: tuple[int | str, ...]) -> str:
    """('spec', 'http', 0, 'route', 1, 'weight') -> 'spec.http[0].route[1].weight'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-after", "function-before", "constrained")):
            continue
        else:
            out += ("." if out else "") + part
    return out


def _value_at(obj: Any, loc: tuple[int | str, ...]) -> Any:
    for part in loc:
        if isinstance(obj, dict):
            obj = obj.get(part)
        elif isinstance(obj, list) and isinstance(part, int) and part < len(obj):
            obj = obj[part]
        else:
            return None
    return obj


_BOUNDS = {"greater_than_equal": ("ge", "greater than or equal to"),
           "less_than_equal": ("le", "less than or equal to"),
           "greater_than": ("gt", "greater than"), "less_than": ("lt", "less than")}


def _cause(errs: FieldErrors, err: Any, obj: Obj) -> None:
    """One semantic pydantic error (a bound, a length, a validator's ValueError) as a
    kube-apiserver cause on its field."""
    loc = tuple(err["loc"])
    path, kind, ctx = field_path(loc), err["type"], err.get("ctx") or {}
    value = err.get("input")
    if kind in _BOUNDS:
        key, words = _BOUNDS[kind]
        errs.invalid(path, value, f"should be {words} {ctx.get(key)}")
    elif kind in ("too_long", "too_short"):
        n = ctx.get("max_length" if kind == "too_long" else "min_length")
        what = "at most" if kind == "too_long" else "at least"
        unit = "items" if isinstance(value, list | dict) else "characters"
        errs.invalid(path, _value_at(obj, loc) if isinstance(value, list) else value,
                     f"must have {what} {n} {unit}")
    else:   # value_error
        errs.invalid(path, value if not isinstance(value, dict) else _value_at(obj, loc),
                     str(ctx.get("error", err.get("msg"))))


# What the models check beyond the official schemas: their own validators (regexes that
# compile, durations, exactly-one rules, unique subset names, CIDRs) and bounds. Types,
# required fields and enums are the schema's job: a model that is stricter there than the
# upstream schema must not refuse what the upstream project accepts.
_SEMANTIC = frozenset({"value_error", "too_long", "too_short", *_BOUNDS})


def check_mesh(resource: str, errs: FieldErrors, obj: Obj) -> None:
    """knet's semantic checks of a mesh object (wire dict) that passed its CRD schema: the
    model's validators, as kube-apiserver-style causes; warnings into errs."""
    model = MESH_MODELS[resource]
    if "spec" not in obj:
        errs.required("spec")
        return
    try:
        model.model_validate(obj)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            if err["loc"] and err["loc"][0] == "metadata":
                continue  # metadata is checked by admission's common code
            if err["type"] in _SEMANTIC:
                _cause(errs, err, obj)
    spec = obj.get("spec") or {}
    if resource == "gateways" and spec.get("gatewayClassName") != "knet":
        errs.warn("spec.gatewayClassName", f"no controller serves GatewayClass "
                  f"{spec.get('gatewayClassName')!r} in knet: this Gateway gets no address; "
                  "use gatewayClassName: knet")
    if resource == "gatewayclasses" and spec.get("controllerName") != \
            "knet.dev/gateway-controller":
        errs.warn("spec.controllerName", f"no controller named {spec.get('controllerName')!r} "
                  "runs in knet; knet's is knet.dev/gateway-controller")


def _checker(resource: str) -> Any:
    def check(errs: FieldErrors, obj: Obj) -> None:
        check_mesh(resource, errs, obj)
    return check


# by CRD name (control.api.crd.CRDs' `checks`)
MESH_CHECKS = {f"{info.plural}.{info.group}": _checker(info.plural) for info in MESH_RESOURCES}

