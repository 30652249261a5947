"""The Table of custom objects (`kubectl get` of a CRD-defined kind): Name, then the CRD's
additionalPrinterColumns read by their simple JSONPaths, dates shown as ages, lists and
maps as compact JSON (Istio's Hosts column: `["reviews"]`), as
kube-apiserver's CRD table convertor does."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from control.models import printers

if TYPE_CHECKING:
    from control.api.crd import CustomKind

Obj = dict[str, Any]


def _jsonpath(obj: Any, path: str) -> Any:
    """A column's simple JSONPath (`.spec.cronSpec`, `.status.conditions[0].type`)."""
    node = obj
    for part in path.strip().strip("{}").lstrip(".").replace("[", ".[").split("."):
        if not part:
            continue
        if part.startswith("[") and part.endswith("]"):
            i = part[1:-1]
            node = node[int(i)] if isinstance(node, list) and i.isdigit() and \
                int(i) < len(node) else None
        else:
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return None
    return node


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
