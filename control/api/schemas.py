"""The upstream OpenAPI schemas of the Kubernetes kinds knet serves, and their field trees.

The schemas are not written here: they come from the `kubernetes-validate` package, which
ships the definitions of each Kubernetes release (converted to JSON Schema: `type` lists with
"null", `$ref` into `$defs`, int-or-string as `oneOf`). `Definitions` turns them back into the
OpenAPI form kube-apiserver serves (`#/components/schemas/` references wrapped in `allOf` so
the description stays beside them, `int-or-string` strings), indexes them by
group/version/kind (`x-kubernetes-group-version-kind`), and compiles per kind a `FieldTree`:
the known field names at each level, which `control.api.fieldcheck` walks to name unknown
fields. Everything is table-driven: a kind gets its schema as soon as upstream has one.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

KUBE_VERSION = "v1.32.0"          # the release /version reports; kubectl 1.32 reads these
REF_V3 = "#/components/schemas/"
_SOURCE_REF = "#/$defs/"


def _load_raw(version: str) -> dict[str, Any]:
    path = (resources.files("kubernetes_validate") / "kubernetes-json-schema"
            / f"{version}-local" / "_definitions.json")
    with path.open("rb") as f:
        return json.load(f)["$defs"]  # type: ignore[no-any-return]


@functools.cache
def _converted(version: str) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str, str], str]]:
    """The converted definitions of a release, once per process: ~0.2 s of work on data that
    never changes (a release's upstream schemas), shared read-only by every server."""
    defs = Definitions.from_source(_load_raw(version))
    return defs.schemas, defs.by_gvk


def _ref(ref: str) -> str:
    """'/api/_definitions.json#/$defs/X' or '#/$defs/X' -> X."""
    return ref.split(_SOURCE_REF, 1)[1]


def _convert(s: Any) -> Any:
    """One JSON Schema node (kubernetes-validate's form) -> kube-apiserver's OpenAPI v3 form."""
    if not isinstance(s, dict):
        return s
    out: dict[str, Any] = {}
    for key, value in s.items():
        if key in ("$schema", "$id"):
            continue
        if key == "type" and isinstance(value, list):
            kinds = [t for t in value if t != "null"]
            if kinds:
                out["type"] = kinds[0]
        elif key == "oneOf" and all(isinstance(v, dict) and set(v) == {"type"} for v in value):
            alternatives = {t for v in value for t in (
                v["type"] if isinstance(v["type"], list) else [v["type"]])}
            out["type"] = "string"
            if "integer" in alternatives:
                out["format"] = "int-or-string"
        elif key == "properties":
            out[key] = {name: _convert(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = _convert(value)
        elif key in ("allOf", "oneOf", "anyOf"):
            out[key] = [_convert(v) for v in value]
        else:
            out[key] = value
    if "$ref" in out:
        target = REF_V3 + _ref(out.pop("$ref"))
        if not out:
            return {"$ref": target}
        out["allOf"] = [{"$ref": target}]
    return out


@dataclass
class FieldTree:
    """The fields one level of an object may have. `fields` None: any field (a map, a
    free-form object, preserve-unknown-fields); `values`: the tree of a map's values or a
    list's items."""
    fields: dict[str, FieldTree] | None = None
    values: FieldTree | None = None
    leaf: bool = False


_ANY = FieldTree(leaf=True)


@dataclass
class Definitions:
    """The OpenAPI definitions of one Kubernetes release, indexed by group/version/kind."""
    schemas: dict[str, dict[str, Any]]
    by_gvk: dict[tuple[str, str, str], str] = field(default_factory=dict)
    _trees: dict[str, FieldTree] = field(default_factory=dict)

    @classmethod
    def load(cls, version: str = KUBE_VERSION) -> Definitions:
        schemas, by_gvk = _converted(version)
        return cls(schemas, by_gvk)

    @classmethod
    def from_source(cls, raw: dict[str, Any]) -> Definitions:
        schemas = {name: _convert(s) for name, s in raw.items()}
        for s in schemas.values():       # kubernetes-validate pins these; upstream does not
            for typemeta in ("apiVersion", "kind"):
                (s.get("properties") or {}).get(typemeta, {}).pop("enum", None)
        by_gvk: dict[tuple[str, str, str], str] = {}
        for name, s in schemas.items():
            gvks = s.get("x-kubernetes-group-version-kind") or []
            if len(gvks) == 1:          # several: a shared meta type (DeleteOptions, ...)
                g = gvks[0]
                by_gvk[(g["group"], g["version"], g["kind"])] = name
        return cls(schemas, by_gvk)

    def name_of(self, group: str, version: str, kind: str) -> str | None:
        return self.by_gvk.get((group, version, kind))

    def closure(self, roots: list[str]) -> dict[str, dict[str, Any]]:
        """The named schemas and every schema they reference, sorted by name."""
        seen: dict[str, dict[str, Any]] = {}
        todo = [r for r in roots if r in self.schemas]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen[name] = self.schemas[name]
            todo.extend(_refs(seen[name]))
        return dict(sorted(seen.items()))

    def tree(self, name: str) -> FieldTree:
        """The field tree of a named schema, compiled once (recursive types share nodes)."""
        tree = self._trees.get(name)
        if tree is None:
            tree = self._trees[name] = FieldTree()
            built = self._compile(self.schemas.get(name) or {})
            tree.fields, tree.values, tree.leaf = built.fields, built.values, built.leaf
        return tree

    def compile(self, s: dict[str, Any]) -> FieldTree:
        """The field tree of an anonymous schema (a CRD's openAPIV3Schema)."""
        return self._compile(s)

    def _compile(self, s: dict[str, Any]) -> FieldTree:
        for sub in s.get("allOf") or ():
            if "$ref" in sub:
                return self.tree(sub["$ref"][len(REF_V3):])
        if "$ref" in s:
            return self.tree(s["$ref"][len(REF_V3):])
        if s.get("x-kubernetes-preserve-unknown-fields"):
            return _ANY
        if "properties" in s:
            return FieldTree(fields={k: self._compile(v) for k, v in s["properties"].items()})
        extra = s.get("additionalProperties")
        if isinstance(extra, dict):
            return FieldTree(values=self._compile(extra))
        if s.get("type") == "array" and isinstance(s.get("items"), dict):
            return FieldTree(values=self._compile(s["items"]))
        return _ANY


def _refs(s: Any) -> list[str]:
    out: list[str] = []
    stack = [s]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(REF_V3):
                out.append(ref[len(REF_V3):])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return out
