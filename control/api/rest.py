"""The REST handlers: `/api/v1/...` and `/apis/GROUP/VERSION/...` for every kind of
`control.models.resources`, namespaced and cluster-wide, with their subresources.

One catch-all route per prefix; `parse_target` reads the rest of the path the way the
kube-apiserver does (`namespaces/NS/PLURAL/NAME/SUB`, where `namespaces/NAME/status` and
`namespaces/NAME/finalize` are the namespace's own subresources), then the handler for the
method calls the object layer. Query parameters keep their Kubernetes names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from control.api import codec, crd, crdtable, fieldcheck, meta, nodeproxy, params
from control.api.conversion import Converter
from control.api.eviction import evict
from control.api.keys import OBJECTS, OPENAPI, REVIEWS, TOKEN_REQUESTS
from control.api.middleware import USER
from control.api.objects import ObjectService, Written
from control.api.reviews import ReviewContext, run_review
from control.api.watch import serve_watch
from control.errors import MethodNotAllowed, NotFound, UnsupportedMedia
from control.models.resources import Registry, ResourceInfo

_NS_SUBRESOURCES = ("status", "finalize")


@dataclass(frozen=True)
class Target:
    info: ResourceInfo        # as the URL names it: a view when its version is not the stored one
    namespace: str | None
    name: str | None
    sub: str | None
    conv: Converter | None = None


def parse_target(group: str, version: str, tail: str,
                 registry: Registry | None = None) -> Target:
    parts = [p for p in tail.split("/") if p] if tail else []
    namespace = None
    if (len(parts) >= 3 and parts[0] == "namespaces"
            and (group != "" or parts[2] not in _NS_SUBRESOURCES)):
        namespace, parts = parts[1], parts[2:]
    if not parts or len(parts) > 3:
        raise NotFound(f"the server could not find the requested resource "
                       f"({group}/{version}/{tail})")
    registry = registry or Registry()
    try:
        info = registry.by_plural(parts[0])
    except KeyError:
        info = meta.resource(parts[0])
    view = registry.view(info, version) if info.group == group else None
    if view is None:
        raise NotFound(f"the server could not find the requested resource: {info.plural} "
                       f"are served under {info.path()}")
    if namespace is not None and not info.namespaced:
        raise NotFound(f"{info.plural} are cluster-scoped; use {info.path()}")
    name = parts[1] if len(parts) > 1 else None
    sub = parts[2] if len(parts) > 2 else None
    allowed = info.subresources + (("finalize",) if info.plural == "namespaces" else ())
    if sub is not None and sub not in allowed:
        raise NotFound(f'{info.plural} "{name}" has no subresource {sub!r}; it has: '
                       + (", ".join(allowed) or "none"))
    return Target(view, namespace, name, sub, Converter(registry, view))


def _target(request: web.Request) -> Target:
    info = request.match_info
    t = parse_target(info.get("group", ""), info["version"], info.get("tail", ""),
                     request.app[OBJECTS].registry)
    if not t.info.stored and request.method != "POST":
        raise MethodNotAllowed(f"{t.info.plural} only answer POST (create): a "
                               f"{t.info.kind} is a question, not a stored object")
    return t


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true")


def _int(request: web.Request, name: str) -> int | None:
    return params.integer(request, name)


def _dry_run(request: web.Request) -> bool:
    return bool(request.query.getall("dryRun", []))


async def _fields(request: web.Request, t: Target, body: Any,
                  patch_type: str | None = None) -> list[str]:
    """Unknown and duplicate fields (control.api.fieldcheck): warnings, or a 400 if Strict."""
    mode = fieldcheck.mode_of(request.query)
    defs = await request.app[OPENAPI].definitions()
    tree = None
    if t.info.custom:
        kind = request.app[OBJECTS].registry.custom_admit(t.info)
        kind = getattr(kind, "by_version", {}).get(t.info.version, kind)
        tree = getattr(kind, "field_tree", None)
        if tree is None and kind is not None:
            tree = kind.field_tree = fieldcheck.custom_tree(defs, kind.schema)
    return fieldcheck.check(defs, t.info, body, await request.read(), request.content_type,
                            mode=mode, patch_type=patch_type, name=t.name or "",
                            namespace=t.namespace, tree=tree)


def _table(request: web.Request, info: ResourceInfo, objs: list[Any], *,
           resource_version: str = "", continue_token: str = "") -> dict[str, Any]:
    kind = request.app[OBJECTS].registry.custom_admit(info) if info.custom else None
    if isinstance(kind, crd.CustomKind):
        md = {"resourceVersion": resource_version} if resource_version else {}
        if continue_token:
            md["continue"] = continue_token
        return crdtable.table(kind, objs, list_meta=md)
    return codec.table_of(info.plural, objs, resource_version=resource_version,
                          continue_token=continue_token, include=codec.include_object(request))


def _written(request: web.Request, t: Target, w: Written, *, sub: str | None = None,
             warnings: list[str] | None = None) -> web.Response:
    if warnings:
        w = dataclasses.replace(w, warnings=[*warnings, *w.warnings])
    status = 201 if w.created else 200
    if codec.wants_table(request) and sub is None:
        return codec.respond(_table(request, t.info, [w.object]), status=status,
                             warnings=w.warnings)
    conv = t.conv
    if w.raw is not None and sub is None:
        raw = conv.outgoing_raw(w.raw) if conv else w.raw
        return codec.respond_raw(raw, status=status, warnings=w.warnings)
    obj = conv.outgoing(w.object) if conv and sub != "scale" else w.object
    return codec.respond(obj, status=status, warnings=w.warnings)


async def handle_get(request: web.Request) -> web.StreamResponse:
    t = _target(request)
    params.resource_version(request)      # a uint64 for gets, lists and watches, or a 400
    objects = request.app[OBJECTS]
    if t.sub in ("log", "exec", "attach", "portforward", "proxy"):
        return await nodeproxy.forward(request, objects, t.namespace or "default", t.name or "",
                                       t.sub)
    if t.name is None or _flag(request, "watch"):
        if _flag(request, "watch"):
            return await serve_watch(request, objects, t.info, namespace=t.namespace,
                                     name=t.name, conv=t.conv)
        return await _list(request, objects, t)
    if t.sub == "token":
        raise MethodNotAllowed("serviceaccounts/token only answers POST (a TokenRequest); "
                               "'kubectl create token NAME' makes one")
    if t.sub == "ephemeralcontainers":  # the Pod itself, as kube-apiserver answers
        return codec.respond_raw(await objects.get_raw(t.info.plural, t.name,
                                                       namespace=t.namespace))
    if t.sub == "scale":
        return codec.respond(await objects.get_scale(t.info.plural, t.name,
                                                     namespace=t.namespace))
    if codec.wants_table(request) and t.sub is None:
        obj = await objects.get(t.info.plural, t.name, namespace=t.namespace)
        return codec.respond(_table(request, t.info, [obj]))
    raw = await objects.get_raw(t.info.plural, t.name, namespace=t.namespace)
    return codec.respond_raw(t.conv.outgoing_raw(raw) if t.conv else raw)


async def _list(request: web.Request, objects: ObjectService, t: Target) -> web.Response:
    q = request.query
    kwargs = {"namespace": t.namespace, "label_selector": q.get("labelSelector"),
              "field_selector": q.get("fieldSelector"), "limit": params.limit(request),
              "continue_token": q.get("continue")}
    if codec.wants_table(request):
        result = await objects.list(t.info.plural, **kwargs)      # type: ignore[arg-type]
        return codec.respond(_table(request, t.info, result.items,
                                    resource_version=result.resource_version,
                                    continue_token=result.continue_token))
    items, rv, token = await objects.list_raw(t.info.plural, **kwargs)  # type: ignore[arg-type]
    if t.conv and t.conv.active:
        items = [t.conv.outgoing_raw(item) for item in items]
    md: dict[str, Any] = {"resourceVersion": rv}
    if token:
        md["continue"] = token
    head = codec.dumps({"kind": t.info.list_kind, "apiVersion": t.info.api_version,
                        "metadata": md})
    body = b"".join((head[:-1], b',"items":[', b",".join(items), b"]}"))
    return web.Response(body=body, content_type="application/json")


async def handle_post(request: web.Request) -> web.StreamResponse:
    t = _target(request)
    objects = request.app[OBJECTS]
    if t.sub in ("exec", "attach", "portforward"):      # kubectl's SPDY-era form is a POST
        return await nodeproxy.forward(request, objects, t.namespace or "default", t.name or "",
                                       t.sub)
    body = await codec.read_body(request, what=f"create {t.info.plural}")
    if not t.info.stored:
        ctx = ReviewContext(user=request[USER], objects=objects, namespace=t.namespace)
        return codec.respond(await run_review(request.app[REVIEWS], t.info, ctx, body),
                             status=201)
    if t.info.plural == "bindings" or t.sub == "binding":
        name = t.name or (body.get("metadata") or {}).get("name", "") if isinstance(
            body, dict) else ""
        return codec.respond(await objects.bind(name, body, namespace=t.namespace or "default"),
                             status=201)
    if t.sub == "token":
        return codec.respond(await request.app[TOKEN_REQUESTS].create(
            objects, namespace=t.namespace or "default", name=t.name or "", body=body),
            status=201)
    if t.sub == "eviction":
        return codec.respond(await evict(objects, namespace=t.namespace or "default",
                                         name=t.name or "", body=body,
                                         dry_run=_dry_run(request)), status=201)
    if t.name is not None:
        raise MethodNotAllowed(f"POST is not allowed on one {t.info.kind}; POST to the "
                               f"collection {t.info.path(t.namespace)} to create")
    warnings = await _fields(request, t, body)
    if t.conv:
        body = t.conv.incoming(body, admit=True)
    w = await objects.create(t.info.plural, body, namespace=t.namespace,
                             dry_run=_dry_run(request), owned=True)
    return _written(request, t, w, warnings=warnings)


async def handle_put(request: web.Request) -> web.StreamResponse:
    t = _target(request)
    if t.name is None:
        raise MethodNotAllowed(f"PUT needs an object name: {t.info.path(t.namespace)}/NAME")
    objects = request.app[OBJECTS]
    body = await codec.read_body(request, what=f"update {t.info.plural}/{t.name}")
    if t.sub == "scale":
        return _written(request, t, await objects.update_scale(
            t.info.plural, t.name, body, namespace=t.namespace, dry_run=_dry_run(request)),
            sub="scale")
    if t.sub == "finalize":
        finalizers = ((body or {}).get("spec") or {}).get("finalizers") or []
        return _written(request, t, await objects.patch(
            "namespaces", t.name, {"spec": {"finalizers": finalizers}}, patch_type="merge",
            dry_run=_dry_run(request)))
    if t.sub not in (None, "status", "ephemeralcontainers"):
        raise MethodNotAllowed(f"PUT is not allowed on {t.info.plural}/{t.sub}")
    warnings = await _fields(request, t, body)
    if t.conv:
        body = t.conv.incoming(body, admit=t.sub is None)
    w = await objects.update(t.info.plural, body, name=t.name, namespace=t.namespace,
                             subresource=t.sub, dry_run=_dry_run(request))
    return _written(request, t, w, sub=t.sub, warnings=warnings)


async def handle_patch(request: web.Request) -> web.StreamResponse:
    t = _target(request)
    if t.name is None:
        raise MethodNotAllowed(f"PATCH needs an object name: {t.info.path(t.namespace)}/NAME")
    if t.sub not in (None, "status", "scale", "ephemeralcontainers"):
        raise MethodNotAllowed(f"PATCH is not allowed on {t.info.plural}/{t.sub}")
    kind = codec.patch_type(request)
    if t.info.custom and kind == "strategic":
        raise UnsupportedMedia("the body of the request was in an unknown format - accepted "
                               "media types include: application/json-patch+json, "
                               "application/merge-patch+json, application/apply-patch+yaml")
    body = await codec.read_body(request, what=f"patch {t.info.plural}/{t.name}")
    warnings = [] if t.sub == "scale" else await _fields(request, t, body, kind)
    if t.conv and t.sub != "scale":
        body = t.conv.incoming(body, admit=False)
    w = await request.app[OBJECTS].patch(
        t.info.plural, t.name, body, patch_type=kind, namespace=t.namespace,
        subresource=t.sub, field_manager=request.query.get("fieldManager"),
        force=_flag(request, "force"), dry_run=_dry_run(request))
    return _written(request, t, w, sub=t.sub, warnings=warnings)


async def handle_delete(request: web.Request) -> web.StreamResponse:
    t = _target(request)
    objects = request.app[OBJECTS]
    body: object = None
    if request.can_read_body:
        raw = await request.read()
        if raw.strip():
            body = await codec.read_body(request, what=f"delete {t.info.plural}")
    opts = params.delete_options(request, body)
    propagation, grace = opts.propagation, opts.grace_period
    dry_run = _dry_run(request) or opts.dry_run
    if t.sub is not None:
        raise MethodNotAllowed(f"DELETE is not allowed on {t.info.plural}/{t.sub}")
    if t.name is None:
        return await _delete_collection(request, objects, t, propagation, grace, dry_run)
    obj = await objects.delete(t.info.plural, t.name, namespace=t.namespace,
                               propagation=propagation, grace_period=grace,
                               preconditions_uid=opts.preconditions_uid,
                               preconditions_rv=opts.preconditions_rv,
                               dry_run=dry_run)
    return codec.respond(t.conv.outgoing(obj) if t.conv else obj)


async def _delete_collection(request: web.Request, objects: ObjectService, t: Target,
                             propagation: str | None, grace: int | None,
                             dry_run: bool) -> web.Response:
    result = await objects.list(t.info.plural, namespace=t.namespace,
                                label_selector=request.query.get("labelSelector"),
                                field_selector=request.query.get("fieldSelector"))
    deleted = []
    for obj in result.items:
        md = obj["metadata"]
        try:
            deleted.append(await objects.delete(t.info.plural, md["name"],
                                                namespace=md.get("namespace"),
                                                propagation=propagation, grace_period=grace,
                                                dry_run=dry_run))
        except NotFound:
            pass
    conv = t.conv
    return codec.respond({"kind": t.info.list_kind, "apiVersion": t.info.api_version,
                          "metadata": {"resourceVersion": result.resource_version},
                          "items": [conv.outgoing(o) for o in deleted] if conv else deleted})


def add_routes(app: web.Application) -> None:
    for prefix in ("/api/{version}", "/apis/{group}/{version}"):
        path = prefix + "/{tail:.+}"
        app.router.add_get(path, handle_get, allow_head=False)
        app.router.add_post(path, handle_post)
        app.router.add_put(path, handle_put)
        app.router.add_patch(path, handle_patch)
        app.router.add_delete(path, handle_delete)
