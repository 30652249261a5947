"""The four patch flavours of the Kubernetes API, as pure functions on wire dicts:

- JSON merge patch (RFC 7386): maps merge, `null` deletes, lists are replaced;
- strategic merge patch: like a merge patch, but lists of objects with a merge key (containers
  and env by `name`, container ports by `containerPort`, Service `spec.ports` by `port`,
  volumeMounts by `mountPath`, conditions by `type`, ...) are merged item by item, and the directives
  `$patch` (replace/delete/merge), `$setElementOrder/<list>`, `$retainKeys` and
  `$deleteFromPrimitiveList/<list>` are honoured, as kubectl apply sends them;
- JSON patch (RFC 6902) through the jsonpatch library;
- server-side apply, reduced to a strategic merge of the applied configuration.

Key design choice: merge keys come from a small table keyed by the list's field name (the
Go struct tags of the built-in types), so no OpenAPI schema is needed on the hot path.
Errors are `BadRequest`/`Invalid` naming the offending path.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch  # type: ignore[import-untyped]

from control.errors import BadRequest, Invalid

__all__ = ["PATCH_TYPES", "apply_patch", "json_patch", "merge_patch", "strategic_merge_patch"]

# Content-Type -> patch flavour, as kubectl and client-go send them.
PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}

# List field name -> merge key (patchMergeKey of the built-in Go types).
_MERGE_KEYS: dict[str, str] = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name",
    "env": "name", "volumes": "name", "imagePullSecrets": "name",
    "volumeMounts": "mountPath", "volumeDevices": "devicePath",
    "conditions": "type", "addresses": "type", "hostAliases": "ip",
    "ownerReferences": "uid", "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name", "schedulingGates": "name",
}
# Lists of scalars merged as sets (patchStrategy "merge" without a key).
_MERGE_SCALAR_LISTS = frozenset({"finalizers"})

_ORDER = "$setElementOrder/"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: returns a new document; `target` is not modified."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def json_patch(target: dict[str, Any], patch: Any) -> dict[str, Any]:
    """RFC 6902 operations; a failed `test` or a bad path is a 422/400 naming the operation."""
    if not isinstance(patch, list):
        raise BadRequest("json patch must be a JSON array of operations, e.g. "
                         '[{"op":"replace","path":"/spec/replicas","value":3}]')
    try:
        result = jsonpatch.JsonPatch(patch).apply(target, in_place=False)
    except jsonpatch.JsonPatchTestFailed as exc:
        raise Invalid(f"json patch test operation failed: {exc}") from None
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, KeyError,
            IndexError, TypeError) as exc:
        raise BadRequest(f"the json patch could not be applied: {exc}") from None
    if not isinstance(result, dict):
        raise BadRequest("the json patch replaced the whole object with a non-object")
    return result


def strategic_merge_patch(target: dict[str, Any], patch: Any) -> dict[str, Any]:
    """Strategic merge of patch onto target; returns a new object."""
    if not isinstance(patch, dict):
        raise BadRequest("a strategic merge patch must be a JSON object")
    return _merge_map(copy.deepcopy(target), patch, path="")


def apply_patch(target: dict[str, Any] | None, applied: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply reduced to create-or-merge: the applied configuration is merged
    strategically onto the live object (fields it omits are kept)."""
    if target is None:
        return copy.deepcopy(applied)
    return strategic_merge_patch(target, applied)


def _merge_map(target: dict[str, Any], patch: dict[str, Any], *, path: str) -> dict[str, Any]:
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return {}
    if directive not in (None, "merge"):
        raise BadRequest(f"unknown patch directive {directive!r} at {path or '/'}; "
                         "use replace, delete or merge")
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            old = target.get(key)
            if isinstance(old, dict):
                merged = _merge_map(old, value, path=f"{path}.{key}")
            else:
                merged = _merge_map({}, value, path=f"{path}.{key}")
            if value.get("$patch") == "delete":
                target.pop(key, None)
            else:
                target[key] = merged
        elif isinstance(value, list):
            target[key] = _merge_list(key, target.get(key), value,
                                      order=patch.get(_ORDER + key), path=f"{path}.{key}")
        else:
            target[key] = value
    for key, value in patch.items():
        if key.startswith(_DELETE_PRIMITIVE):
            name = key[len(_DELETE_PRIMITIVE):]
            if isinstance(target.get(name), list):
                target[name] = [v for v in target[name] if v not in value]
        elif key.startswith(_ORDER):
            name = key[len(_ORDER):]
            if name not in patch and isinstance(target.get(name), list):
                target[name] = _reorder(name, target[name], value, path=f"{path}.{name}")
    if isinstance(retain, list):
        keep = set(retain)
        for key in list(target):
            if key not in keep:
                del target[key]
    return target


def _merge_key(name: str, path: str) -> str | None:
    """The merge key of the list `name` found at `path` (".spec.ports", ...), or None for a
    list that is replaced whole (Endpoints and EndpointSlice ports are atomic)."""
    if name == "ports":
        if path == ".spec.ports":
            return "port"                                          # a Service
        return "containerPort" if "ontainers[" in path else None   # a container, else atomic
    return _MERGE_KEYS.get(name)


def _merge_list(name: str, old: Any, patch: list[Any], *, order: Any, path: str) -> list[Any]:
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [copy.deepcopy(i) for i in patch
                if not (isinstance(i, dict) and i.get("$patch") == "replace")]
    old_list = old if isinstance(old, list) else []
    if name in _MERGE_SCALAR_LISTS:
        merged = list(old_list)
        merged += [v for v in patch if v not in merged]
        return merged
    key = _merge_key(name, path)
    if key is None or not all(isinstance(i, dict) for i in patch):
        return copy.deepcopy(patch)
    out = [i for i in old_list]
    for item in patch:
        if key not in item:
            raise BadRequest(f"{path}: an item of {name} lacks its merge key {key!r}")
        idx = next((n for n, o in enumerate(out)
                    if isinstance(o, dict) and o.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                del out[idx]
            continue
        if idx is None:
            out.append(_merge_map({}, item, path=f"{path}[{item[key]}]"))
        else:
            out[idx] = _merge_map(copy.deepcopy(out[idx]), item, path=f"{path}[{item[key]}]")
    if isinstance(order, list):
        out = _reorder(name, out, order, path=path)
    return out


def _reorder(name: str, items: list[Any], order: list[Any], *, path: str) -> list[Any]:
    """Items named in `order` first, in that order; the others keep their relative place."""
    if not order:
        return items
    if all(isinstance(o, dict) for o in order):
        key = _merge_key(name, path)
        if key is None:
            return items
        rank = {o.get(key): n for n, o in enumerate(order)}

        def pos(item: Any) -> Any:
            return item.get(key) if isinstance(item, dict) else None
    else:
        rank = {o: n for n, o in enumerate(order)}

        def pos(item: Any) -> Any:
            return item
    ordered = sorted((i for i in items if pos(i) in rank), key=lambda i: rank[pos(i)])
    rest = [i for i in items if pos(i) not in rank]
    return ordered + rest
