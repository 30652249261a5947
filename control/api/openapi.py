"""`/openapi/v2` and `/openapi/v3`: the upstream schemas of every kind knet serves.

kubectl reads them for `explain`, for client-side hints and, before `create` and `apply`, to
see that the PATCH operation of the object's kind carries `x-kubernetes-group-version-kind`
and a `fieldValidation` query parameter (then it leaves validation to the server). The
schemas come from `control.api.schemas.Definitions` (the kubernetes-validate package), never
from a hand-written table: each served ResourceInfo whose group/version/kind upstream defines
gets its schema and those it references. Documents are built on first request (the
definitions take ~0.2 s to load, off the event loop), kept as bytes with a strong ETag, and
answered with 304 to `If-None-Match`, like kube-openapi's handler; a v3 group-version URL
carrying a stale `?hash=` is redirected to the current one. `/openapi/v2` is also served as
gnostic protobuf (control.api.openapiproto), which kubectl's client-side validation asks for;
like kube-openapi's handler, it carries the JSON document's ETag (the response varies by Accept).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from control.api import codec, openapiproto
from control.api.schemas import KUBE_VERSION, REF_V3, Definitions
from control.models.resources import RESOURCES, ResourceInfo

_PARAMS = ("fieldValidation", "dryRun", "fieldManager", "pretty")
_QUERY_V3 = [{"name": n, "in": "query", "schema": {"type": "string"}, "uniqueItems": True}
             for n in _PARAMS]
_QUERY_V2 = [{"name": n, "in": "query", "type": "string", "uniqueItems": True} for n in _PARAMS]
_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_SHARED = [_META + "Status", _META + "DeleteOptions", _META + "WatchEvent", _META + "Patch"]
_INFO = {"title": "Kubernetes", "version": KUBE_VERSION}


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


@dataclass(frozen=True)
class Doc:
    body: bytes
    etag: str          # quoted, as sent in ETag

    @classmethod
    def of(cls, obj: Any, *, v2: bool = False) -> Doc:
        body = codec.dumps(obj)
        if v2:
            body = body.replace(b'"' + REF_V3.encode(), b'"#/definitions/')
        return cls(body, '"' + hashlib.sha512(body).hexdigest()[:64].upper() + '"')


class OpenAPI:
    """The documents for a set of resources, built once and cached as bytes."""

    def __init__(self, resources: Callable[[], Iterable[ResourceInfo]],
                 load: Callable[[], Definitions] = Definitions.load,
                 custom: Callable[[ResourceInfo], dict[str, Any] | None] | None = None
                 ) -> None:
        self._resources = resources
        self._custom = custom or (lambda info: None)
        self._load = load
        self._defs: Definitions | None = None
        self._lock = asyncio.Lock()
        self._v3: dict[str, Doc] | None = None
        self._root: Doc | None = None
        self._v2: Doc | None = None
        self._v2_proto: Doc | None = None

    async def definitions(self) -> Definitions:
        if self._defs is None:
            async with self._lock:
                if self._defs is None:
                    self._defs = await asyncio.to_thread(self._load)
        return self._defs

    def invalidate(self) -> None:
        """The served resources changed (a CustomResourceDefinition): rebuild on next read."""
        self._v3 = self._root = self._v2 = self._v2_proto = None

    def _by_gv(self) -> dict[tuple[str, str], list[ResourceInfo]]:
        out: dict[tuple[str, str], list[ResourceInfo]] = {}
        for info in self._resources():
            out.setdefault((info.group, info.version), []).append(info)
        return out

    async def v3(self) -> tuple[Doc, dict[str, Doc]]:
        defs = await self.definitions()
        if self._v3 is None or self._root is None:
            docs = {_gv_path(g, v): Doc.of(gv_document(defs, infos, self._custom))
                    for (g, v), infos in self._by_gv().items()}
            root = {"paths": {path: {"serverRelativeURL":
                                     f"/openapi/v3/{path}?hash={doc.etag.strip(chr(34))}"}
                              for path, doc in docs.items()}}
            self._v3, self._root = docs, Doc.of(root)
        return self._root, self._v3

    async def v2(self) -> Doc:
        defs = await self.definitions()
        if self._v2 is None:
            infos = [i for infos in self._by_gv().values() for i in infos]
            paths: dict[str, Any] = {}
            for info in infos:
                paths.update(_paths(info, _QUERY_V2))
            definitions = defs.closure(_roots(defs, infos))
            definitions.update(_custom_schemas(infos, self._custom))
            self._v2 = Doc.of({"swagger": "2.0", "info": _INFO, "paths": paths,
                               "definitions": definitions}, v2=True)
        return self._v2

    async def v2_proto(self) -> Doc:
        """The v2 document as gnostic protobuf, encoded once per schema change (off the loop)."""
        doc = await self.v2()
        if self._v2_proto is None or self._v2_proto.etag != doc.etag:
            body = await asyncio.to_thread(
                lambda: openapiproto.encode_document(json.loads(doc.body)))
            self._v2_proto = Doc(body, doc.etag)
        return self._v2_proto


def _roots(defs: Definitions, infos: Iterable[ResourceInfo]) -> list[str]:
    names = list(_SHARED)
    for info in infos:
        for kind in (info.kind, info.list_kind):
            name = defs.name_of(info.group, info.version, kind)
            if name:
                names.append(name)
    return names


def _ops(info: ResourceInfo, verbs: tuple[tuple[str, str], ...],
         query: list[dict[str, Any]]) -> dict[str, Any]:
    gvk = {"group": info.group, "version": info.version, "kind": info.kind}
    ops: dict[str, Any] = {}
    for method, verb in verbs:
        ops[method] = {"operationId": f"{verb}{info.kind}", "parameters": query,
                       "responses": {"200": {"description": "OK"}},
                       "x-kubernetes-action": verb,
                       "x-kubernetes-group-version-kind": gvk}
    return ops


def _paths(info: ResourceInfo, query: list[dict[str, Any]]) -> dict[str, Any]:
    ns = "/namespaces/{namespace}" if info.namespaced else ""
    base = f"/{_gv_path(info.group, info.version)}{ns}/{info.plural}"
    paths = {base: _ops(info, (("get", "list"), ("post", "post")), query),
             base + "/{name}": _ops(info, (("get", "get"), ("put", "put"), ("patch", "patch"),
                                           ("delete", "delete")), query)}
    for sub in info.subresources:
        if sub in ("status", "scale"):
            paths[f"{base}/{{name}}/{sub}"] = _ops(info, (("get", "get"), ("put", "put"),
                                                         ("patch", "patch")), query)
    return paths


def _custom_schemas(infos: Iterable[ResourceInfo],
                    custom: Callable[[ResourceInfo], dict[str, Any] | None]
                    ) -> dict[str, Any]:
    """The openAPIV3Schema of each CRD-defined kind, named as kube-apiserver names it
    (`com.example.stable.v1.CronTab`), with the type meta and ObjectMeta added."""
    out: dict[str, Any] = {}
    for info in infos:
        schema = custom(info) if info.custom else None
        if schema is None:
            continue
        name = ".".join(reversed(info.group.split("."))) + f".{info.version}.{info.kind}"
        props = {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                 "metadata": {"allOf": [{"$ref": REF_V3 + _META + "ObjectMeta"}]},
                 **(schema.get("properties") or {})}
        out[name] = {**schema, "type": "object", "properties": props,
                     "x-kubernetes-group-version-kind": [
                         {"group": info.group, "version": info.version, "kind": info.kind}]}
    return out


def gv_document(defs: Definitions, infos: list[ResourceInfo],
                custom: Callable[[ResourceInfo], dict[str, Any] | None] = lambda i: None
                ) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for info in infos:
        paths.update(_paths(info, _QUERY_V3))
    schemas = defs.closure(_roots(defs, infos) + ([_META + "ObjectMeta"] if any(
        i.custom for i in infos) else []))
    schemas.update(_custom_schemas(infos, custom))
    return {"openapi": "3.0.0", "info": _INFO, "paths": paths,
            "components": {"schemas": schemas}}


def _respond(request: web.Request, doc: Doc, *, immutable: bool = False,
             content_type: str = "application/json") -> web.Response:
    headers = {"ETag": doc.etag, "Vary": "Accept",
               "Cache-Control": "public, immutable" if immutable else "no-cache, private"}
    if doc.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=doc.body, headers={**headers, "Content-Type": content_type})


def _v2_form(request: web.Request) -> str | None:
    """"json", "proto" or None (406): the best Accept clause (by q, then order) that
    kube-openapi's handler would serve."""
    clauses: list[tuple[float, int, str]] = []
    for n, clause in enumerate((request.headers.get("Accept") or "*/*").split(",")):
        mime, *params = (part.strip() for part in clause.split(";"))
        quality = next((p[2:] for p in params if p.startswith("q=")), "1")
        try:
            clauses.append((-float(quality), n, mime))
        except ValueError:
            continue
    for negated, _, mime in sorted(clauses):
        if negated < 0 and mime in ("application/json", "application/*", "*/*"):
            return "json"
        if negated < 0 and mime in openapiproto.ACCEPTED:
            return "proto"
    return None


def build_routes(app: web.Application, openapi: OpenAPI | None = None) -> OpenAPI:
    api = openapi or OpenAPI(lambda: RESOURCES)

    async def root_handler(request: web.Request) -> web.Response:
        root, _ = await api.v3()
        return _respond(request, root)

    async def doc_handler(request: web.Request) -> web.Response:
        _, docs = await api.v3()
        path = request.match_info["path"].strip("/")
        doc = docs.get(path)
        if doc is None:
            raise web.HTTPNotFound()
        want = request.query.get("hash")
        current = doc.etag.strip('"')
        if want and want != current:
            raise web.HTTPMovedPermanently(f"/openapi/v3/{path}?hash={current}")
        return _respond(request, doc, immutable=bool(want))

    async def v2_handler(request: web.Request) -> web.Response:
        form = _v2_form(request)
        if form == "proto":
            return _respond(request, await api.v2_proto(), content_type=openapiproto.CONTENT_TYPE)
        if form is None:
            raise web.HTTPNotAcceptable()
        return _respond(request, await api.v2())

    app.router.add_get("/openapi/v3", root_handler, allow_head=False)
    app.router.add_get("/openapi/v3/{path:.+}", doc_handler, allow_head=False)
    app.router.add_get("/openapi/v2", v2_handler, allow_head=False)
    return api
