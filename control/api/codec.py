"""Request bodies in, responses out: JSON or YAML bodies (a parse error is a 400 that quotes
it; nesting depth and YAML alias expansion are bounded by `control.api.untrusted` before any
parser can recurse), the patch type from Content-Type (415 for others), Table negotiation from Accept, and
`Warning: 299` headers for admission warnings.
"""

from __future__ import annotations

from typing import Any

import yaml  # type: ignore[import-untyped]
from aiohttp import web

from control.api import meta, protobuf, untrusted
from control.api.patch import PATCH_TYPES
from control.errors import BadRequest, UnsupportedMedia
from control.models.tables import table

MAX_BODY = 3 * 1024 * 1024
# client-go sends protobuf for typed clients and falls back to JSON on a 415.
_PROTOBUF = "application/vnd.kubernetes.protobuf"
_BINARY_TYPES = ("application/cbor",)
_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "application/apply-patch+yaml")


async def read_body(request: web.Request, *, what: str) -> Any:
    ctype = request.content_type
    raw = await request.read()
    if ctype == _PROTOBUF:
        return protobuf.decode_object(raw)
    if ctype in _BINARY_TYPES:
        raise UnsupportedMedia(f"{what}: {ctype} bodies are not supported; send "
                               "application/json or application/yaml")
    if not raw.strip():
        raise BadRequest(f"{what}: the request body is empty; send a JSON or YAML object")
    limit = MAX_BODY                           # the body limit applies after YAML expansion
    if ctype in _YAML_TYPES:
        try:
            return await untrusted.load_yaml(raw, what=what, max_bytes=limit)
        except yaml.YAMLError as exc:
            return _json(raw, what, f"the YAML body could not be parsed: {exc}")
    untrusted.check_json_depth(raw, what=what)
    try:
        return meta.loads(raw)
    except ValueError as exc:
        # Not JSON: maybe YAML sent without a Content-Type.
        if (ctype in ("application/json", "application/octet-stream", "") or "json" in ctype) \
                and not raw.lstrip().startswith((b"{", b"[")):
            try:
                data = await untrusted.load_yaml(raw, what=what, max_bytes=limit)
            except yaml.YAMLError:
                data = None
            if isinstance(data, (dict, list)):
                return data
        raise BadRequest(f"{what}: the JSON body could not be parsed: {exc}") from None


def _json(raw: bytes, what: str, problem: str) -> Any:
    """A body sent as YAML that YAML cannot read: JSON (within the depth limit), or a 400."""
    untrusted.check_json_depth(raw, what=what)
    try:
        return meta.loads(raw)
    except ValueError:
        raise BadRequest(f"{what}: {problem}") from None


def patch_type(request: web.Request) -> str:
    ctype = request.content_type
    kind = PATCH_TYPES.get(ctype)
    if kind is None:
        raise UnsupportedMedia(
            f"the body of the request was in an unknown format ({ctype or 'no Content-Type'}); "
            "accepted media types include: " + ", ".join(PATCH_TYPES))
    return kind


def wants_table(request: web.Request) -> bool:
    return "as=Table" in request.headers.get("Accept", "")


def dumps(obj: Any) -> bytes:
    return meta.dumps(obj)


def respond(obj: Any, *, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    return respond_raw(dumps(obj), status=status, warnings=warnings)


def respond_raw(body: bytes, *, status: int = 200,
                warnings: list[str] | None = None) -> web.Response:
    resp = web.Response(body=body, status=status, content_type="application/json")
    for warning in warnings or ():
        text = warning.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
        resp.headers.add("Warning", f'299 - "{text}"')
    return resp


_INCLUDE = ("None", "Metadata", "Object")


def include_object(request: web.Request) -> str:
    """The `includeObject` query parameter of a Table request (kubectl sends Object for
    `--sort-by`); Metadata when absent."""
    value = request.query.get("includeObject") or "Metadata"
    if value not in _INCLUDE:
        raise BadRequest("Unable to convert to Table as requested: includeObject: Unsupported "
                         f'value: "{value}": supported values: "Metadata", "None", "Object"')
    return value


def table_of(resource: str, objs: list[dict[str, Any]], *, resource_version: str = "",
             continue_token: str = "", include_columns: bool = True,
             include: str = "Metadata") -> dict[str, Any]:
    md: dict[str, Any] = {}
    if resource_version:
        md["resourceVersion"] = resource_version
    if continue_token:
        md["continue"] = continue_token
    return table(resource, objs, list_meta=md, include_columns=include_columns,
                 include=include)
