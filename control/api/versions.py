"""How the next version of an object is computed, apart from storage: the metadata a create
fills in, the immutable metadata and the status/main split of an update, the generation
bump, and the dispatch of the four patch types. Pure functions on wire dicts; the
`ObjectService` calls them between reading and compare-and-swap writing.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

from control.api import meta
from control.api import patch as patches
from control.api.meta import Obj
from control.errors import BadRequest, Cause, Invalid
from control.models.resources import ResourceInfo


def prepare_create(info: ResourceInfo, obj: Obj, namespace: str | None, *, now: meta.Now,
                   rng: random.Random) -> Obj:
    """A new object as it will be stored: kind, name (or generateName), namespace, uid,
    creationTimestamp, generation 1; status reset as Kubernetes' create strategies do."""
    if not isinstance(obj, dict):
        raise BadRequest(f"the body of a {info.kind} create must be a JSON object")
    check_kind(info, obj)
    md = obj.get("metadata")
    if md is None:
        md = obj["metadata"] = {}
    if not isinstance(md, dict):
        raise BadRequest(f"{info.kind}: metadata must be an object")
    if md.get("resourceVersion"):
        raise BadRequest(f"{info.kind} {md.get('name', '')!r}: resourceVersion should not "
                         "be set on objects to be created; remove it")
    if not md.get("name"):
        if not md.get("generateName"):
            raise meta_invalid(info, "", "metadata.name",
                               "name or generateName is required")
        md["name"] = meta.generate_name(str(md["generateName"]), rng)
    set_namespace(info, md, namespace)
    for key in ("deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
        md.pop(key, None)
    md["uid"] = str(uuid.uuid4())
    md["creationTimestamp"] = meta.rfc3339(now())
    md["generation"] = 1
    if "status" in info.subresources and info.plural != "nodes":
        obj.pop("status", None)
    if info.plural == "pods":
        obj.setdefault("status", {})["phase"] = "Pending"
    elif info.plural == "namespaces":
        obj["status"] = {"phase": "Active"}
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    return obj

def check_kind(info: ResourceInfo, obj: Obj) -> None:
    kind, api_version = obj.get("kind"), obj.get("apiVersion")
    if kind and kind != info.kind:
        raise BadRequest(f"the kind of the body ({kind}) does not match the resource "
                         f"{info.plural} of the URL, which holds {info.kind}")
    if api_version and api_version != info.api_version:
        raise BadRequest(f"{info.kind}: apiVersion {api_version!r} is not served for "
                         f"{info.plural}; use {info.api_version!r}")
    obj["kind"], obj["apiVersion"] = info.kind, info.api_version

def set_namespace(info: ResourceInfo, md: Obj, namespace: str | None) -> None:
    if not info.namespaced:
        md.pop("namespace", None)
        return
    body_ns = md.get("namespace")
    if namespace and body_ns and body_ns != namespace:
        raise BadRequest(f"the namespace of the provided object ({body_ns}) does not "
                         f"match the namespace sent on the request ({namespace})")
    md["namespace"] = namespace or body_ns or "default"


def meta_invalid(info: ResourceInfo, name: str, field_path: str, message: str) -> Exception:
    return Invalid(f'{info.kind} "{name}" is invalid: {field_path}: {message}',
                   kind=info.kind, name=name, group=info.group,
                   causes=[Cause(field=field_path, message=message,
                                 reason="FieldValueRequired")])


def apply_patch(patch_type: str, current: Obj, body: Any) -> Obj:
    if patch_type == "json":
        return patches.json_patch(current, body)
    if patch_type == "merge":
        if not isinstance(body, dict):
            raise BadRequest("a merge patch must be a JSON object")
        out: Obj = patches.merge_patch(current, body)
        return out
    if patch_type == "strategic":
        return patches.strategic_merge_patch(current, body)
    if patch_type == "apply":
        if not isinstance(body, dict):
            raise BadRequest("an apply patch must be a whole object")
        return patches.apply_patch(current, body)
    raise BadRequest(f"unknown patch type {patch_type!r}; use merge, strategic, json or apply")


def patch_has_rv(body: Any) -> bool:
    return isinstance(body, dict) and bool((body.get("metadata") or {}).get("resourceVersion"))


_KEEP_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
              "generation", "namespace", "name")


def merge_update(info: ResourceInfo, old: Obj, new: Obj, *, subresource: str | None) -> Obj:
    """The next version: immutable metadata from old; status only through /status."""
    if subresource == "status":
        out = dict(old)
        if "status" in new:
            out["status"] = new["status"]
        return out
    out = dict(new)
    out["kind"], out["apiVersion"] = info.kind, info.api_version
    md = out["metadata"] = dict(out.get("metadata") or {})
    old_md = old["metadata"]
    for key in _KEEP_META:
        if key in old_md:
            md[key] = old_md[key]
        else:
            md.pop(key, None)
    md.pop("resourceVersion", None)
    if "status" in info.subresources and subresource is None:
        if "status" in old:
            out["status"] = old["status"]
        else:
            out.pop("status", None)
    return out


def bump_generation(old: Obj, new: Obj) -> None:
    """metadata.generation + 1 when anything but metadata and status changed."""
    if _spec_of(new) != _spec_of(old):
        new["metadata"]["generation"] = int(old["metadata"].get("generation") or 1) + 1


def _spec_of(obj: Obj) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}
