"""Server-side field validation (`?fieldValidation=Strict|Warn|Ignore`) as kube-apiserver does it.

Unknown fields (not in the kind's upstream schema, `control.api.schemas.FieldTree`) and
duplicate JSON keys are named by their path (`spec.template.spec.containers[0].prots`):
Strict refuses the request with 400 `Deployment in version "v1" cannot be handled as a
Deployment: strict decoding error: unknown field "spec.replica", ...`; Warn (the default)
answers `Warning: unknown field "spec.replica"` headers; Ignore says nothing. The unknown
fields are then dropped, as a typed decoder would. Duplicates are found in the raw JSON (the C
scanner hands each object's key/value pairs, in order, to `list`), so one walk reports both in
document order, as Go's strict decoder does; patches list duplicates first, then the unknown
fields sorted. A server-side apply with an unknown field is refused in every mode, in the
typed converter's words (`.spec.replica: field not declared in schema`).
"""

from __future__ import annotations

import json
from typing import Any

from control.api.schemas import Definitions, FieldTree
from control.errors import BadRequest
from control.models.resources import ResourceInfo

MODES = ("Strict", "Warn", "Ignore")
_JSON_TYPES = ("application/json", "application/merge-patch+json",
               "application/strategic-merge-patch+json", "")


def mode_of(query: Any) -> str:
    value = query.get("fieldValidation") or "Warn"
    if value not in MODES:
        raise BadRequest(f'fieldValidation "{value}" is not supported: use one of Strict, '
                         "Warn or Ignore")
    return str(value)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Walk:
    def __init__(self, *, patch: bool) -> None:
        self.patch = patch
        self.unknown: list[str] = []
        self.found: list[str] = []        # document order: duplicates and unknown fields

    def _unknown(self, path: str) -> None:
        self.unknown.append(path)
        self.found.append(f'unknown field "{path}"')

    def pairs(self, node: Any, tree: FieldTree, path: str) -> None:
        """Walk json.loads(raw, object_pairs_hook=list): objects are lists of (key, value)."""
        if tree.leaf or not isinstance(node, list) or not node:
            return
        if not isinstance(node[0], tuple):               # an array
            if tree.values is not None:
                for i, item in enumerate(node):
                    self.pairs(item, tree.values, f"{path}[{i}]")
            return
        seen: set[str] = set()
        for key, value in node:
            if self.patch and key.startswith("$"):
                continue
            sub = tree.fields.get(key) if tree.fields is not None else tree.values
            if key in seen:     # typed bodies name an unknown duplicate once; patches twice
                if sub is not None or self.patch:
                    self.found.append(f'duplicate field "{_join(path, key)}"')
                continue
            seen.add(key)
            if sub is None:
                self._unknown(_join(path, key))
            else:
                self.pairs(value, sub, _join(path, key))

    def value(self, node: Any, tree: FieldTree, path: str) -> None:
        """Walk an already decoded object (YAML bodies): unknown fields only."""
        if tree.leaf:
            return
        if isinstance(node, list):
            if tree.values is not None:
                for i, item in enumerate(node):
                    self.value(item, tree.values, f"{path}[{i}]")
            return
        if not isinstance(node, dict):
            return
        for key, value in node.items():
            if self.patch and key.startswith("$"):
                continue
            sub = tree.fields.get(key) if tree.fields is not None else tree.values
            if sub is None:
                self._unknown(_join(path, key))
            else:
                self.value(value, sub, _join(path, key))


def _drop(obj: Any, path: list[str]) -> None:
    """Remove one unknown field (path as split by find) from the decoded body."""
    node = obj
    for part in path[:-1]:
        if isinstance(node, list):
            node = node[int(part)] if part.isdigit() and int(part) < len(node) else None
        elif isinstance(node, dict):
            node = node.get(part)
        if node is None:
            return
    if isinstance(node, dict):
        node.pop(path[-1], None)


def _split(path: str) -> list[str]:
    return path.replace("[", ".").replace("]", "").split(".")


def check(defs: Definitions, info: ResourceInfo, body: Any, raw: bytes, content_type: str,
          *, mode: str, patch_type: str | None = None, name: str = "",
          namespace: str | None = None, tree: FieldTree | None = None) -> list[str]:
    """The warnings to send; raises BadRequest in Strict mode. Drops unknown fields."""
    if tree is None:
        schema = defs.name_of(info.group, info.version, info.kind)
        if schema is None:
            return []
        tree = defs.tree(schema)
    if not isinstance(body, dict) or patch_type == "json":
        return []
    if mode == "Ignore" and patch_type != "apply":
        _drop_unknown(tree, body)
        return []
    walk = _Walk(patch=patch_type in ("merge", "strategic"))
    if content_type in _JSON_TYPES and raw.lstrip().startswith(b"{"):
        walk.pairs(json.loads(raw, object_pairs_hook=list), tree, "")
    else:
        walk.value(body, tree, "")
    if not walk.found:
        return []
    for path in walk.unknown:
        _drop(body, _split(path))
    if patch_type == "apply":
        if walk.unknown:
            where = f"{namespace}/{name}" if namespace else name
            raise BadRequest(f"failed to create typed patch object ({where}; "
                             f"{info.api_version}, Kind={info.kind}): "
                             + ", ".join(f".{p}: field not declared in schema"
                                         for p in walk.unknown))
        return []
    found = walk.found
    if walk.patch:
        dups = [f for f in found if f.startswith("duplicate")]
        found = dups + sorted(f for f in found if not f.startswith("duplicate"))
    if mode == "Strict":
        raise BadRequest(f'{info.kind} in version "{info.version}" cannot be handled as a '
                         f"{info.kind}: strict decoding error: " + ", ".join(found))
    return found


def custom_tree(defs: Definitions, schema: dict[str, Any]) -> FieldTree:
    """The field tree of a CRD's openAPIV3Schema (type meta and ObjectMeta added)."""
    tree = defs.compile(schema)
    if tree.fields is None:
        return tree
    meta = defs.name_of("meta.k8s.io", "v1", "ObjectMeta") or \
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    return FieldTree(fields={"apiVersion": FieldTree(leaf=True), "kind": FieldTree(leaf=True),
                             "metadata": defs.tree(meta), **tree.fields})


def _drop_unknown(tree: FieldTree, node: Any) -> None:
    if tree.leaf:
        return
    if isinstance(node, list):
        if tree.values is not None:
            for item in node:
                _drop_unknown(tree.values, item)
    elif isinstance(node, dict):
        for key in list(node):
            sub = tree.fields.get(key) if tree.fields is not None else tree.values
            if sub is None:
                if not key.startswith("$"):
                    del node[key]
            else:
                _drop_unknown(sub, node[key])
