"""The small `/openapi/v3` documents kubectl reads before `create` and `apply`.

kubectl checks, per group-version document, that the PATCH operation of the object's kind
carries `x-kubernetes-group-version-kind` and a `fieldValidation` (and `dryRun`) query
parameter; if so it leaves validation to the server instead of validating client-side.
Schemas are deliberately left out: with no schema for a kind, `kubectl apply` computes its
strategic merge patch from its built-in Go types, which know every merge key exactly.
`/openapi/v2` is a 404, which kubectl tolerates once v3 answers.
"""

from __future__ import annotations

import hashlib
from typing import Any

from aiohttp import web

from control.api import codec
from control.models.resources import RESOURCES, ResourceInfo, groups

_QUERY = [{"name": n, "in": "query", "schema": {"type": "string"}, "uniqueItems": True}
          for n in ("fieldValidation", "dryRun", "fieldManager", "pretty")]


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _ops(info: ResourceInfo, verbs: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    gvk = {"group": info.group, "version": info.version, "kind": info.kind}
    ops: dict[str, Any] = {}
    for method, verb in verbs:
        ops[method] = {"operationId": f"{verb}{info.kind}", "parameters": _QUERY,
                       "responses": {"200": {"description": "OK"}},
                       "x-kubernetes-action": verb,
                       "x-kubernetes-group-version-kind": gvk}
    return ops


def group_version_doc(group: str, version: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for info in RESOURCES:
        if info.group != group or info.version != version:
            continue
        ns = "/namespaces/{namespace}" if info.namespaced else ""
        base = f"/{_gv_path(group, version)}{ns}/{info.plural}"
        paths[base] = _ops(info, (("get", "list"), ("post", "post")))
        paths[base + "/{name}"] = _ops(info, (("get", "get"), ("put", "put"),
                                              ("patch", "patch"), ("delete", "delete")))
        for sub in info.subresources:
            if sub in ("status", "scale"):
                paths[f"{base}/{{name}}/{sub}"] = _ops(info, (("get", "get"), ("put", "put")))
    return {"openapi": "3.0.0",
            "info": {"title": "knet", "version": "v1.32.0"},
            "paths": paths, "components": {"schemas": {}}}


def build_routes(app: web.Application) -> None:
    docs: dict[str, bytes] = {}
    for group, versions in groups().items():
        for version in versions:
            docs[_gv_path(group, version)] = codec.dumps(group_version_doc(group, version))
    root = {"paths": {
        path: {"serverRelativeURL":
               f"/openapi/v3/{path}?hash={hashlib.sha256(body).hexdigest()[:32].upper()}"}
        for path, body in docs.items()}}
    root_body = codec.dumps(root)

    async def root_handler(request: web.Request) -> web.Response:
        return web.Response(body=root_body, content_type="application/json")

    async def doc_handler(request: web.Request) -> web.Response:
        body = docs.get(request.match_info["path"].strip("/"))
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(body=body, content_type="application/json")

    app.router.add_get("/openapi/v3", root_handler, allow_head=False)
    app.router.add_get("/openapi/v3/{path:.+}", doc_handler, allow_head=False)
