"""CustomResourceDefinitions (apiextensions.k8s.io/v1) served generically, as kube-apiserver does.

`CRDs` runs inside the API server and watches its own store: each CRD whose names are free
(`<plural>.<group>` is its name, the plural is not served already) is registered in the
server's `Registry` (routing, discovery, OpenAPI, namespace deletion and garbage collection
then know the kind) and gets `NamesAccepted` and `Established` conditions; a deleted CRD takes
its objects with it. Custom objects are admitted by `CustomKind`: unknown fields pruned,
`default:`s applied, then validated against `openAPIV3Schema` with the `jsonschema` package,
each failure worded as kube-apiserver's (`spec.cronSpec: Invalid value: "x": spec.cronSpec in
body should match '^...$'`). Several served versions share the stored objects with
conversion `None` (control.api.conversion): only apiVersion differs, each version's schema
validates what is written through it. The scale subresource follows the CRD's JSON paths.
`x-kubernetes-validations` (CEL) rules run after the schema (control.api.celrules).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import jsonschema  # type: ignore[import-untyped]

from control.api import celrules, meta
from control.errors import ApiError, BadRequest, Cause
from control.models import names
from control.models.fielderrors import FieldErrors
from control.models.resources import ResourceInfo
from control.store.base import StoreEvent

if TYPE_CHECKING:
    from control.api.objects import ObjectService

log = logging.getLogger(__name__)

PLURAL = "customresourcedefinitions"
PREFIX = f"/registry/{PLURAL}/"
Obj = dict[str, Any]
# A check a schema cannot express (control.models.meshkinds'), run on an object that passed
# its schema: causes and warnings into the FieldErrors.
SemanticCheck = Callable[[FieldErrors, Obj], None]


def storage_version(crd: Obj) -> Obj | None:
    versions = (crd.get("spec") or {}).get("versions") or []
    return next((v for v in versions if v.get("storage")), versions[0] if versions else None)


def info_of(crd: Obj) -> ResourceInfo:
    spec = crd.get("spec") or {}
    nm = spec.get("names") or {}
    version = storage_version(crd) or {}
    subs = (version.get("subresources") or {})
    scale = subs.get("scale") if isinstance(subs.get("scale"), dict) else None
    others = tuple(v.get("name", "") for v in spec.get("versions") or ()
                   if v.get("served", True) and v.get("name") != version.get("name"))
    return ResourceInfo(
        nm.get("kind", ""), nm.get("plural", ""), spec.get("group", ""), version.get("name", ""),
        spec.get("scope", "Namespaced") == "Namespaced", tuple(nm.get("shortNames") or ()),
        tuple(nm.get("categories") or ()), tuple(s for s in ("status", "scale") if s in subs),
        singular=nm.get("singular") or nm.get("kind", "").lower(), custom=True,
        served_versions=others,
        scale_paths=(scale.get("specReplicasPath", ""), scale.get("statusReplicasPath", ""),
                     scale.get("labelSelectorPath") or "") if scale else None)


async def admission(objects: ObjectService, plural: str, obj: Obj) -> None:
    """Validate a new CRD (an AdmissionPlugin): names, scope, one storage version."""
    if plural != PLURAL:
        return
    errs = FieldErrors()
    spec = errs.map_of("spec", obj.get("spec"))
    nm = errs.map_of("spec.names", spec.get("names"))
    group = spec.get("group") or ""
    for field in ("plural", "kind"):
        if not nm.get(field):
            errs.required(f"spec.names.{field}")
    if not group:
        errs.required("spec.group")
    plural_name = nm.get("plural") or ""
    name = (obj.get("metadata") or {}).get("name", "")
    if plural_name and group and name != f"{plural_name}.{group}":
        errs.invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group')
    if plural_name and plural_name != plural_name.lower():
        errs.invalid("spec.names.plural", plural_name, "a lowercase RFC 1123 label")
    errs.one_of("spec.scope", spec.get("scope"), ("Cluster", "Namespaced"))
    versions = errs.list_of("spec.versions", spec.get("versions"))
    if not versions:
        errs.required("spec.versions", "must have exactly one version marked as storage "
                      "version")
    elif sum(1 for v in versions if isinstance(v, dict) and v.get("storage")) != 1:
        errs.invalid("spec.versions", versions and "...", "must have exactly one version "
                     "marked as storage version")
    errs.raise_if_any(kind="CustomResourceDefinition", group="apiextensions.k8s.io",
                      name=name)


def _openapi_to_jsonschema(s: Any) -> Any:
    """OpenAPI v3 schema -> what jsonschema's Draft 4 checks (nullable, int-or-string)."""
    if not isinstance(s, dict):
        return s
    out = {k: v for k, v in s.items() if not k.startswith("x-kubernetes-")}
    for key in ("properties", "patternProperties"):
        if isinstance(s.get(key), dict):
            out[key] = {k: _openapi_to_jsonschema(v) for k, v in s[key].items()}
    for key in ("items", "additionalProperties", "not"):
        if isinstance(s.get(key), dict):
            out[key] = _openapi_to_jsonschema(s[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if isinstance(s.get(key), list):
            out[key] = [_openapi_to_jsonschema(v) for v in s[key]]
    out.pop("default", None)
    if s.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if s.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if s.get("x-kubernetes-embedded-resource") and isinstance(out.get("properties"), dict):
        out["properties"].pop("metadata", None)
    return out


def _path(parts: Any) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


class CustomKind:
    """The admission of one custom kind: prune, default, validate."""

    def __init__(self, schema: Obj | None, columns: list[Obj] | None = None,
                 subresources: Obj | None = None, check: SemanticCheck | None = None,
                 rules: celrules.Rules | None = None) -> None:
        self.check = check
        self.rules = rules                   # its x-kubernetes-validations (CEL), if any
        self.subresources = tuple(s for s in ("status", "scale") if s in (subresources or {}))
        self.columns = columns or [{"name": "Age", "type": "date",
                                    "jsonPath": ".metadata.creationTimestamp"}]
        self.schema = schema or {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        self.validator = jsonschema.Draft4Validator(_openapi_to_jsonschema(self.schema))
        self.field_tree: Any = None          # control.api.fieldcheck's, built on first use
        self.by_version: dict[str, CustomKind] = {}   # every version's, on the storage one's

    def __call__(self, info: ResourceInfo, obj: Obj, old: Obj | None) -> tuple[Obj, list[str]]:
        if not isinstance(obj, dict):
            raise BadRequest(f"the body of a {info.kind} must be a JSON object, got "
                             f"{type(obj).__name__}")
        obj = copy.deepcopy(obj)
        errs = FieldErrors()
        name = (obj.get("metadata") or {}).get("name") or ""
        if name:
            errs.names("metadata.name", name, names.dns1123_subdomain)
        _prune(self.schema, obj, top=True)
        _default(self.schema, obj)
        body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
        blocking = False
        for e in sorted(self.validator.iter_errors(body), key=lambda e: list(e.absolute_path)):
            _cause(errs, e)
            blocking = blocking or e.validator in _BLOCKING
        _list_types(self.schema, obj, "", errs)
        if self.rules is not None:
            celrules.run(self.rules, errs, obj, old, blocked=blocking)
        if self.check is not None:      # with the schema's causes, as CEL rules are
            _add_new_causes(errs, self.check, obj)
        errs.raise_if_any(kind=info.kind, group=info.group, name=name)
        return obj, errs.warnings


# schema failures after which kube-apiserver runs no CEL rule (strategy.go's hasBlockingErr)
_BLOCKING = frozenset({"type", "required", "enum", "maxLength", "maxItems", "maxProperties"})


def _add_new_causes(errs: FieldErrors, check: SemanticCheck, obj: Obj) -> None:
    """Run `check`, keeping its causes on fields the schema found nothing wrong with (nor
    with a field around them), so one mistake is never reported twice."""
    mine = FieldErrors()
    check(mine, obj)
    taken = [c.field for c in errs.causes]
    for cause in mine.causes:
        if not any(cause.field == t or cause.field.startswith((f"{t}.", f"{t}["))
                   or t.startswith((f"{cause.field}.", f"{cause.field}[")) for t in taken):
            errs.causes.append(cause)
    errs.warnings.extend(mine.warnings)


def _cause(errs: FieldErrors, e: jsonschema.ValidationError) -> None:
    path = _path(e.absolute_path)
    v = e.validator
    if v == "required":
        missing = e.message.split("'")[1] if "'" in e.message else ""
        errs.required(f"{path}.{missing}" if path else missing)
        return
    if v == "enum":
        errs.not_supported(path, e.instance, tuple(str(x) for x in e.validator_value))
        return
    value = e.validator_value
    if v == "type":
        detail = f'must be of type {_first(value)}: "{_json_type(e.instance)}"'
    else:
        detail = {
            "pattern": f"should match '{value}'",
            "maximum": f"should be less than or equal to {value}",
            "minimum": f"should be greater than or equal to {value}",
            "maxLength": f"should be at most {value} chars long",
            "minLength": f"should be at least {value} chars long",
            "maxItems": f"should have at most {value} items",
            "minItems": f"should have at least {value} items",
            "oneOf": "must validate one and only one schema (oneOf)",
            "anyOf": "must validate at least one schema (anyOf)",
        }.get(str(v), e.message)
    errs.invalid(path, e.instance, f"{path} in body {detail}")


def _list_types(s: Any, node: Any, path: str, errs: FieldErrors) -> None:
    """`x-kubernetes-list-type: set | map` (with `x-kubernetes-list-map-keys`): no two items
    alike, as kube-apiserver's structural validation says (`Duplicate value: ...`)."""
    if not isinstance(s, dict):
        return
    if isinstance(node, dict):
        props = s.get("properties") or {}
        extra = s.get("additionalProperties")
        for key, value in node.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                _list_types(sub, value, f"{path}.{key}" if path else key, errs)
        return
    if not isinstance(node, list):
        return
    kind, seen = s.get("x-kubernetes-list-type"), set()
    keys = s.get("x-kubernetes-list-map-keys") or []
    for i, item in enumerate(node):
        if kind == "map" and isinstance(item, dict) and keys:
            ident = tuple(repr(item.get(k)) for k in keys)
            if ident in seen:
                shown = ",".join(f'"{k}":{_go(item.get(k))}' for k in keys if k in item)
                errs.causes.append(Cause(f"{path}[{i}]", "Duplicate value: map[string]"
                                         f"interface {{}}{{{shown}}}", "FieldValueDuplicate"))
            seen.add(ident)
        elif kind == "set":
            ident = (repr(item),)
            if ident in seen:
                errs.duplicate(f"{path}[{i}]", item)
            seen.add(ident)
        _list_types(s.get("items"), item, f"{path}[{i}]", errs)


def _go(value: Any) -> str:
    """A scalar as Go's %#v prints it inside a map (strings quoted)."""
    return f'"{value}"' if isinstance(value, str) else str(value).lower() \
        if isinstance(value, bool) else str(value)


def _first(value: Any) -> str:
    return value if isinstance(value, str) else str(value[0])


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return {float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), "object")


def _prune(s: Obj, node: Any, *, top: bool = False) -> None:
    if not isinstance(s, dict) or s.get("x-kubernetes-preserve-unknown-fields") and \
            "properties" not in s:
        return
    if isinstance(node, dict):
        props = s.get("properties")
        keep = ("apiVersion", "kind", "metadata") if top or s.get(
            "x-kubernetes-embedded-resource") else ()
        if isinstance(props, dict):
            for key in list(node):
                if key in keep:
                    continue   # `metadata: {type: object}` (every official CRD) prunes nothing
                if key in props:
                    _prune(props[key], node[key])
                elif key not in keep and not s.get("x-kubernetes-preserve-unknown-fields"):
                    del node[key]
        elif isinstance(s.get("additionalProperties"), dict):
            for value in node.values():
                _prune(s["additionalProperties"], value)
        elif not s.get("x-kubernetes-preserve-unknown-fields") and s.get("type") == "object":
            for key in [k for k in node if k not in keep]:
                del node[key]
    elif isinstance(node, list) and isinstance(s.get("items"), dict):
        for item in node:
            _prune(s["items"], item)


def _default(s: Obj, node: Any) -> None:
    if not isinstance(s, dict):
        return
    if isinstance(node, dict):
        for key, sub in (s.get("properties") or {}).items():
            if key not in node and isinstance(sub, dict) and "default" in sub:
                node[key] = copy.deepcopy(sub["default"])
            if key in node:
                _default(sub, node[key])
        if isinstance(s.get("additionalProperties"), dict):
            for value in node.values():
                _default(s["additionalProperties"], value)
    elif isinstance(node, list) and isinstance(s.get("items"), dict):
        for item in node:
            _default(s["items"], item)


def _conditions(now: str, accepted: bool, why: str) -> list[Obj]:
    status = "True" if accepted else "False"
    return [{"type": "NamesAccepted", "status": status, "lastTransitionTime": now,
             "reason": "NoConflicts" if accepted else "PluralConflict",
             "message": "no conflicts found" if accepted else why},
            {"type": "Established", "status": status, "lastTransitionTime": now,
             "reason": "InitialNamesAccepted" if accepted else "NotAccepted",
             "message": "the initial names have been accepted" if accepted
             else "not all names are accepted"}]


class CRDs:
    """Keeps the registry in step with the stored CRDs and sets their conditions.
    `checks` adds semantic checks to the kinds of some CRDs (by CRD name, as
    `httproutes.gateway.networking.k8s.io`), run after each version's schema."""

    def __init__(self, objects: ObjectService, on_change: Any = None,
                 checks: Mapping[str, SemanticCheck] | None = None) -> None:
        self.objects = objects
        self.on_change = on_change          # e.g. OpenAPI.invalidate
        self.checks = dict(checks or {})
        self.cel = celrules.Compiler()      # each rule compiled once, shared by versions
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        kvs, rev = await self.objects.store.list(PREFIX)
        for kv in kvs:
            await self._put(meta.decode(kv))
        self._task = asyncio.create_task(self._watch(rev), name="crd-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self, rev: int) -> None:
        async with self.objects.store.watch(PREFIX, from_revision=rev) as events:
            async for ev in events:
                try:
                    await self._event(ev, meta.decode(ev.kv))
                except Exception:                   # keep watching
                    log.exception("customresourcedefinition %s", ev.kv.key)

    async def _event(self, ev: StoreEvent, crd: Obj) -> None:
        if ev.type == "DELETE":
            await self._removed(crd)
        else:
            await self._put(crd)

    async def _put(self, crd: Obj) -> None:
        name = crd["metadata"]["name"]
        info = info_of(crd)
        registry = self.objects.registry
        taken = registry.taken(info.plural, name)
        if not taken:
            kinds = {v.get("name", ""): CustomKind(
                (v.get("schema") or {}).get("openAPIV3Schema"), v.get("additionalPrinterColumns"),
                v.get("subresources"), self.checks.get(name), self.cel.rules_of(crd, v))
                for v in (crd.get("spec") or {}).get("versions") or ()}
            kind = kinds[info.version]
            kind.by_version = kinds
            registry.set_custom(name, info, kind)
            if self.on_change:
                self.on_change()
        status = crd.get("status") or {}
        have = {c.get("type"): c.get("status") for c in status.get("conditions") or ()}
        want = "False" if taken else "True"
        if have.get("Established") == want and have.get("NamesAccepted") == want:
            return
        names_ = (crd.get("spec") or {}).get("names") or {}
        patch = {"status": {
            "conditions": _conditions(meta.rfc3339(self.objects.now()), not taken,
                                      f'"{info.plural}" is already in use'),
            "acceptedNames": names_ if not taken else {},
            "storedVersions": [info.version]}}
        with contextlib.suppress(ApiError):
            await self.objects.patch(PLURAL, name, patch, patch_type="merge",
                                     subresource="status")

    async def _removed(self, crd: Obj) -> None:
        name = crd["metadata"]["name"]
        info = info_of(crd)
        registry = self.objects.registry
        try:
            mine = registry.by_plural(info.plural)
        except KeyError:
            return
        if not mine.custom:
            return
        kvs, _ = await self.objects.store.list(mine.prefix())
        for kv in kvs:
            with contextlib.suppress(Exception):
                await self.objects.store.delete(kv.key)
        registry.remove_custom(name)
        if self.on_change:
            self.on_change()
