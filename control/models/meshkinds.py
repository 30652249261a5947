"""The mesh kinds (Gateway API + Istio networking) as knet serves them: resource infos,
admission checks and `kubectl get` columns, gathered here so one block in each of
resources.py / validation.py / tables.py registers them (and CRDs can replace them later).

Validation runs the pydantic models of meshgateway.py / meshistio.py and turns each pydantic
error into a kube-apiserver cause: `spec.http[0].route[1].weight: Invalid value: -1: must be
greater than or equal to 0`. Unknown fields become warnings (`unknown field "spec.foo"`),
as kube-apiserver's default fieldValidation=Warn reports them for CRDs.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from control.models.fielderrors import FieldErrors
from control.models.meshgateway import Gateway, GatewayClass, HTTPRoute, ReferenceGrant
from control.models.meshistio import DestinationRule, VirtualService
from control.models.meshsecurity import AuthorizationPolicy, PeerAuthentication
from control.models.meta import TopLevel
from control.models.printers import age

__all__ = ["MESH_CHECKS", "MESH_COLUMNS", "MESH_MODELS", "MESH_PRINTERS", "check_mesh",
           "field_path"]

Obj = dict[str, Any]

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


_TYPES = {"int_type": "an integer", "int_parsing": "an integer", "string_type": "a string",
          "bool_type": "a boolean", "bool_parsing": "a boolean", "list_type": "a list",
          "dict_type": "an object", "model_type": "an object", "model_attributes_type":
          "an object", "float_type": "a number", "float_parsing": "a number",
          "int_from_float": "an integer"}
_BOUNDS = {"greater_than_equal": ("ge", "greater than or equal to"),
           "less_than_equal": ("le", "less than or equal to"),
           "greater_than": ("gt", "greater than"), "less_than": ("lt", "less than")}


def _cause(errs: FieldErrors, err: Any, obj: Obj) -> None:
    loc = tuple(err["loc"])
    path, kind, ctx = field_path(loc), err["type"], err.get("ctx") or {}
    value = err.get("input") if kind != "missing" else None
    if kind == "missing":
        errs.required(path)
    elif kind in _TYPES:
        errs.type_error(path, value, _TYPES[kind])
    elif kind == "literal_error":
        errs.not_supported(path, value, tuple(re.findall(r"'([^']*)'", ctx.get("expected", ""))))
    elif kind in _BOUNDS:
        key, words = _BOUNDS[kind]
        errs.invalid(path, value, f"should be {words} {ctx.get(key)}")
    elif kind in ("too_long", "too_short"):
        n = ctx.get("max_length" if kind == "too_long" else "min_length")
        what = "at most" if kind == "too_long" else "at least"
        unit = "items" if isinstance(value, list | dict) else "characters"
        errs.invalid(path, _value_at(obj, loc) if isinstance(value, list) else value,
                     f"must have {what} {n} {unit}")
    elif kind == "string_too_long" or kind == "string_too_short":
        n = ctx.get("max_length") or ctx.get("min_length")
        if kind == "string_too_short" and n == 1:
            errs.required(path)
        else:
            errs.invalid(path, value, f"must be {'at most' if 'long' in kind else 'at least'} "
                         f"{n} characters")
    elif kind == "value_error":
        errs.invalid(path, value if not isinstance(value, dict) else _value_at(obj, loc),
                     str(ctx.get("error", err.get("msg"))))
    else:
        errs.invalid(path, value, str(err.get("msg")))


def _unknown(errs: FieldErrors, model: BaseModel, path: str) -> None:
    """Warn about fields no model declares (under spec; metadata/status are free)."""
    for key in model.model_extra or {}:
        if path:
            errs.warn(f"{path}.{key}", f'unknown field "{path}.{key}"')
    for name, info in type(model).model_fields.items():
        val = getattr(model, name)
        sub = f"{path}.{info.alias or name}" if path else ""
        if name == "spec":
            sub = "spec"
        if isinstance(val, BaseModel) and sub:
            _unknown(errs, val, sub)
        elif isinstance(val, list) and sub:
            for i, item in enumerate(val):
                if isinstance(item, BaseModel):
                    _unknown(errs, item, f"{sub}[{i}]")
        elif isinstance(val, dict) and sub:
            for k, item in val.items():
                if isinstance(item, BaseModel):
                    _unknown(errs, item, f"{sub}[{k}]")


def check_mesh(resource: str, errs: FieldErrors, obj: Obj) -> None:
    """Validate a mesh object (wire dict) with its model; causes and warnings into errs."""
    model = MESH_MODELS[resource]
    if "spec" not in obj:
        errs.required("spec")
        return
    try:
        parsed = model.model_validate(obj)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            if err["loc"] and err["loc"][0] == "metadata":
                continue  # metadata is checked by admission's common code
            _cause(errs, err, obj)
        return
    _unknown(errs, parsed, "")
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


MESH_CHECKS = {r: _checker(r) for r in MESH_MODELS}

# kubectl get columns: the upstream CRDs' additionalPrinterColumns.
_AGE = ("Age", "date", 0, ("CreationTimestamp is a timestamp representing the server time "
        "when this object was created."))
_NAME = ("Name", "string", 0, "Name must be unique within a namespace.")
MESH_COLUMNS: dict[str, list[tuple[str, str, int, str]]] = {
    "httproutes": [_NAME, ("Hostnames", "string", 0, ""), _AGE],
    "gateways": [_NAME, ("Class", "string", 0, ""), ("Address", "string", 0, ""),
                 ("Programmed", "string", 0, ""), _AGE],
    "gatewayclasses": [_NAME, ("Controller", "string", 0, ""),
                       ("Accepted", "string", 0, ""), _AGE,
                       ("Description", "string", 1, "")],
    "referencegrants": [_NAME, _AGE],
    "virtualservices": [_NAME, ("Gateways", "string", 0, ("The names of gateways and sidecars "
                                "that should apply these routes")),
                        ("Hosts", "string", 0, ("The destination hosts to which traffic is "
                         "being sent")), _AGE],
    "destinationrules": [_NAME, ("Host", "string", 0, ("The name of a service from the "
                                 "service registry")), _AGE],
    "peerauthentications": [_NAME, ("Mode", "string", 0, ("Defines the mTLS mode used for "
                                    "peer authentication.")), _AGE],
    "authorizationpolicies": [_NAME, ("Action", "string", 0, "The operation to take."),
                              _AGE],
}


def _spec(o: Obj) -> Obj:
    s = o.get("spec")
    return s if isinstance(s, dict) else {}


def _condition(o: Obj, kind: str) -> str:
    for c in (o.get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == kind:
            return str(c.get("status") or "")
    return "Unknown"


def _list(value: Any) -> list[str] | None:
    """A string list as kubectl prints a CRD column of type string from a JSON path: the
    JSON array (`["a","b"]`), or nothing."""
    return [str(v) for v in value] if isinstance(value, list) and value else None


def _json(value: Any) -> str:
    lst = _list(value)
    return json.dumps(lst, separators=(",", ":")) if lst else ""


def _created(o: Obj, now: datetime) -> str:
    """A date column, as the CRD table convertor shows it: the age."""
    return age((o.get("metadata") or {}).get("creationTimestamp"), now)


def _name(o: Obj) -> str:
    return str((o.get("metadata") or {}).get("name") or "")


def _addresses(o: Obj) -> str:
    addrs = (o.get("status") or {}).get("addresses") or []
    return str(addrs[0].get("value", "")) if addrs and isinstance(addrs[0], dict) else ""


MESH_PRINTERS: dict[str, Any] = {
    "httproutes": lambda o, now: [_name(o), _json(_spec(o).get("hostnames")), _created(o, now)],
    "gateways": lambda o, now: [_name(o), _spec(o).get("gatewayClassName") or "",
                                _addresses(o), _condition(o, "Programmed"), _created(o, now)],
    "gatewayclasses": lambda o, now: [_name(o), _spec(o).get("controllerName") or "",
                                      _condition(o, "Accepted"), _created(o, now),
                                      _spec(o).get("description") or ""],
    "referencegrants": lambda o, now: [_name(o), _created(o, now)],
    "virtualservices": lambda o, now: [_name(o), _json(_spec(o).get("gateways")),
                                       _json(_spec(o).get("hosts")), _created(o, now)],
    "destinationrules": lambda o, now: [_name(o), _spec(o).get("host") or "",
                                        _created(o, now)],
    "peerauthentications": lambda o, now: [_name(o), (_spec(o).get("mtls") or {}).get("mode")
                                           or "", _created(o, now)],
    "authorizationpolicies": lambda o, now: [_name(o), _spec(o).get("action") or "",
                                             _created(o, now)],
}
