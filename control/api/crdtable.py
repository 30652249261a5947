"""The Table of custom objects (`kubectl get` of a CRD-defined kind): Name, then the CRD's
additionalPrinterColumns read by their simple JSONPaths, dates shown as ages, lists and
maps as compact JSON (Istio's Hosts column: `["reviews"]`), as
kube-apiserver's CRD table convertor does."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from control.models import printers

if TYPE_CHECKING:
    from control.api.crd import CustomKind

Obj = dict[str, Any]


_STEP = re.compile(r"""\.([^.\[]+)|\[(\d+|\*)\]|\[\?\(@\.([\w.-]+)\s*==\s*["']([^"']*)["']\)\]""")


def _jsonpath(obj: Any, path: str) -> Any:
    """A column's JSONPath (`.spec.cronSpec`, `.status.conditions[0].type`, `[*]`, and a
    filter `[?(@.type=="Ready")]`): its first result, as kube-apiserver's CRD table
    convertor takes it (None when there is none)."""
    nodes, text = [obj], path.strip().strip("{}")
    if not text.startswith((".", "[")):
        text = "." + text
    pos = 0
    while pos < len(text) and nodes:
        m = _STEP.match(text, pos)
        if m is None:
            return None
        pos = m.end()
        field, index, key, want = m.groups()
        out: list[Any] = []
        for node in nodes:
            if field is not None and isinstance(node, dict) and field in node:
                out.append(node[field])
            elif index == "*" and isinstance(node, list):
                out.extend(node)
            elif index is not None and index != "*" and isinstance(node, list) \
                    and int(index) < len(node):
                out.append(node[int(index)])
            elif key is not None and isinstance(node, list):
                out.extend(x for x in node if isinstance(x, dict) and str(x.get(key)) == want)
        nodes = [n for n in out if n is not None]
    return nodes[0] if nodes and pos >= len(text) else None


def table(kind: CustomKind, objs: list[Obj], *, list_meta: Obj | None = None,
          include_columns: bool = True, now: datetime | None = None) -> Obj:
    """The Table of custom objects: Name, then the CRD's additionalPrinterColumns (dates as
    ages), as kube-apiserver's CRD table convertor does."""
    now = now or datetime.now(UTC)
    cols = [{"name": "Name", "type": "string", "format": "name", "priority": 0,
             "description": "Name must be unique within a namespace."}]
    cols += [{"name": c.get("name", ""), "type": c.get("type", "string"),
              "format": c.get("format", ""), "description": c.get("description", ""),
              "priority": c.get("priority", 0)} for c in kind.columns]
    rows = []
    for obj in objs:
        cells: list[Any] = [(obj.get("metadata") or {}).get("name")]
        for c in kind.columns:
            value = _jsonpath(obj, c.get("jsonPath", ""))
            if c.get("type") == "date" and value is not None:
                value = printers.age(value, now)
            elif isinstance(value, list | dict):   # as the JSONPath printer shows them
                value = json.dumps(value, separators=(",", ":"))
            cells.append(value)
        rows.append({"cells": cells, "object": {
            "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata") or {}}})
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": dict(list_meta or {}),
            "columnDefinitions": cols if include_columns else [], "rows": rows}
