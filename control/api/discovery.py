"""Discovery, version and health: `/api`, `/apis`, `/apis/GROUP`, `/api/v1`,
`/apis/GROUP/VERSION` (APIResourceList with short names, categories and subresources such as
`deployments/scale` in autoscaling/v1), `/version`, `/healthz`, `/readyz`, `/livez`.

kubectl asks for aggregated discovery (apidiscovery.k8s.io/v2) first; answering with plain
`application/json` makes client-go fall back to these legacy documents, which it accepts.
The documents are built from the server's `Registry` (built-ins and CRD kinds) and rebuilt
only when its generation changes (a CustomResourceDefinition came or went).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from control.api import codec
from control.models.resources import RESOURCES, Registry, ResourceInfo

VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0", "gitCommit": "knet",
           "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
           "goVersion": "go1.23.0", "compiler": "gc", "platform": "linux/amd64"}

_RW = ["get", "patch", "update"]


def _subresource(info: ResourceInfo, sub: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": f"{info.plural}/{sub}", "singularName": "",
                             "namespaced": info.namespaced, "kind": info.kind, "verbs": _RW}
    if sub == "scale":
        entry.update(group="autoscaling", version="v1", kind="Scale")
    elif sub == "log":
        entry.update(kind="Pod", verbs=["get"])
    elif sub in ("exec", "attach", "portforward"):
        kind = {"exec": "PodExecOptions", "attach": "PodAttachOptions",
                "portforward": "PodPortForwardOptions"}[sub]
        entry.update(kind=kind, verbs=["create", "get"])
    elif sub == "proxy":
        kind = {"pods": "PodProxyOptions", "services": "ServiceProxyOptions",
                "nodes": "NodeProxyOptions"}.get(info.plural, info.kind)
        entry.update(kind=kind, verbs=["create", "delete", "get", "patch", "update"])
    elif sub == "binding":
        entry.update(kind="Binding", verbs=["create"])
    elif sub == "token":
        entry.update(group="authentication.k8s.io", version="v1", kind="TokenRequest",
                     verbs=["create"])
    elif sub == "eviction":
        entry.update(group="policy", version="v1", kind="Eviction", verbs=["create"])
    return entry


def resource_list(group: str, version: str,
                  infos: tuple[ResourceInfo, ...] = RESOURCES) -> dict[str, Any]:
    out: list[dict[str, Any]] = []
    for info in infos:
        if info.group != group or info.version != version:
            continue
        entry: dict[str, Any] = {"name": info.plural, "singularName": info.singular_name,
                                 "namespaced": info.namespaced, "kind": info.kind,
                                 "verbs": list(info.verbs)}
        if info.short_names:
            entry["shortNames"] = list(info.short_names)
        if info.categories:
            entry["categories"] = list(info.categories)
        out.append(entry)
        out.extend(_subresource(info, sub) for sub in info.subresources)
        if info.plural == "namespaces":
            out.append({"name": "namespaces/finalize", "singularName": "", "namespaced": False,
                        "kind": "Namespace", "verbs": ["update"]})
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": out}


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    vs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": vs, "preferredVersion": vs[0]}


@dataclass
class _Docs:
    generation: int
    api: bytes
    apis: bytes
    named: dict[str, dict[str, Any]]
    lists: dict[tuple[str, str], bytes]


def _build(registry: Registry, extra: tuple[dict[str, Any], ...] = ()) -> _Docs:
    """`extra`: APIResourceLists served outside the registry (metrics.k8s.io)."""
    all_groups = registry.groups()
    infos = registry.views()
    api = codec.dumps({"kind": "APIVersions", "versions": all_groups.get("", ["v1"]),
                       "serverAddressByClientCIDRs": [
                           {"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]})
    named = {g: _group(g, vs) for g, vs in all_groups.items() if g}
    for doc in extra:
        group, _, version = doc["groupVersion"].partition("/")
        named[group] = _group(group, [version])
    apis = codec.dumps({"kind": "APIGroupList", "apiVersion": "v1",
                        "groups": list(named.values())})
    lists = {(g, v): codec.dumps(resource_list(g, v, infos))
             for g, vs in all_groups.items() for v in vs}
    lists.update({tuple(doc["groupVersion"].split("/", 1)): codec.dumps(doc)
                  for doc in extra})
    return _Docs(registry.generation, api, apis, named, lists)


def build_routes(app: web.Application, registry: Registry | None = None, *,
                 extra: tuple[dict[str, Any], ...] = ()) -> None:
    reg = registry or Registry()
    cache = [_build(reg, extra)]
    version = codec.dumps(VERSION)

    def docs() -> _Docs:
        if cache[0].generation != reg.generation:
            cache[0] = _build(reg, extra)
        return cache[0]

    def static(body: bytes) -> Any:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=body, content_type="application/json")
        return handler

    async def api(request: web.Request) -> web.Response:
        return web.Response(body=docs().api, content_type="application/json")

    async def apis(request: web.Request) -> web.Response:
        return web.Response(body=docs().apis, content_type="application/json")

    async def group_doc(request: web.Request) -> web.Response:
        group = request.match_info["group"]
        named = docs().named
        if group not in named:
            raise web.HTTPNotFound()
        doc = {"kind": "APIGroup", "apiVersion": "v1", **named[group]}
        return codec.respond(doc)

    async def version_doc(request: web.Request) -> web.Response:
        key = (request.match_info.get("group", ""), request.match_info["version"])
        lists = docs().lists
        if key not in lists:
            raise web.HTTPNotFound()
        return web.Response(body=lists[key], content_type="application/json")

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/api", api, allow_head=False)
    app.router.add_get("/api/", api, allow_head=False)
    app.router.add_get("/apis", apis, allow_head=False)
    app.router.add_get("/apis/", apis, allow_head=False)
    app.router.add_get("/version", static(version), allow_head=False)
    app.router.add_get("/version/", static(version), allow_head=False)
    app.router.add_get("/api/{version}", version_doc, allow_head=False)
    app.router.add_get("/apis/{group}", group_doc, allow_head=False)
    app.router.add_get("/apis/{group}/{version}", version_doc, allow_head=False)
    for path in ("/healthz", "/readyz", "/livez"):
        app.router.add_get(path, health)
