"""Query parameters read the way kube-apiserver reads them, before anything else runs.

A resourceVersion is a uint64 for lists, gets and watches alike (what the storage layer's
`APIObjectVersioner.ParseResourceVersion` accepts), refused with kube-apiserver's own message;
no later layer (the store's SQL, a watch's catch-up) ever sees a value it cannot hold.
Integer parameters are int64 (Go's query conversion). `limit` below 1 means "no limit", as in
kube-apiserver, whose storage pages only when `limit > 0`; `timeoutSeconds` is capped.
DeleteOptions fields of the wrong type are a 400 (they once reached int() and gave a 500).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from control.errors import BadRequest

__all__ = ["MAX_TIMEOUT", "DeleteOptions", "delete_options", "integer", "limit",
           "resource_version", "timeout_seconds"]

_T = TypeVar("_T")

UINT64_MAX = 2**64 - 1
INT64_MAX = 2**63 - 1
MAX_TIMEOUT = 3600       # seconds a watch may last; kube-apiserver's default is 30-60 min


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def resource_version(request: web.Request) -> str | None:
    """The `resourceVersion` query parameter, checked to be a uint64 (None if absent)."""
    raw = request.query.get("resourceVersion")
    if raw in (None, ""):
        return None
    if not _digits(raw):
        problem = "invalid syntax"
    elif int(raw) > UINT64_MAX:
        problem = "value out of range"
    else:
        return raw
    raise BadRequest(f'invalid resource version: resourceVersion: Invalid value: "{raw}": '
                     f'strconv.ParseUint: parsing "{raw}": {problem}; pass a resourceVersion '
                     "this server returned, or none for the latest")


def integer(request: web.Request, name: str) -> int | None:
    """An int64 query parameter (None if absent)."""
    raw = request.query.get(name)
    if raw in (None, ""):
        return None
    text = raw[1:] if raw[:1] in "+-" else raw
    if not _digits(text) or len(text) > 19 or not -INT64_MAX - 1 <= int(raw) <= INT64_MAX:
        raise BadRequest(f"query parameter {name}={raw!r} must be an integer "
                         f"between {-INT64_MAX - 1} and {INT64_MAX}")
    return int(raw)


def limit(request: web.Request) -> int:
    """`limit`: the page size, 0 (everything) when absent, zero or negative."""
    return max(integer(request, "limit") or 0, 0)


def timeout_seconds(request: web.Request) -> int:
    """`timeoutSeconds` of a watch: absent or 0 is the server's default (MAX_TIMEOUT, as
    kube-apiserver picks its own), negative ends the watch at once, more is capped."""
    value = integer(request, "timeoutSeconds")
    if not value:
        return MAX_TIMEOUT
    return min(max(value, 0), MAX_TIMEOUT)


def delete_options(request: web.Request, body: object) -> DeleteOptions:
    """DeleteOptions from the query and the body (the query wins), typed as kube-apiserver
    decodes them: a field of the wrong type is a 400, never a crash later."""
    opts = body if isinstance(body, dict) else {}
    grace = integer(request, "gracePeriodSeconds")
    if grace is None and opts.get("gracePeriodSeconds") is not None:
        grace = _typed(opts, "gracePeriodSeconds", int)
        if not -INT64_MAX - 1 <= grace <= INT64_MAX:
            raise BadRequest(f"DeleteOptions.gracePeriodSeconds {grace} is out of range")
    propagation = request.query.get("propagationPolicy") or (
        _typed(opts, "propagationPolicy", str) if opts.get("propagationPolicy") else None)
    pre = _typed(opts, "preconditions", dict) if opts.get("preconditions") else {}
    uid = _typed(pre, "uid", str) if pre.get("uid") is not None else None
    rv = _typed(pre, "resourceVersion", str) if pre.get("resourceVersion") is not None else None
    dry_run = bool(_typed(opts, "dryRun", list)) if opts.get("dryRun") else False  # kubectl's
    return DeleteOptions(grace, propagation, uid, rv, dry_run)


@dataclass(frozen=True)
class DeleteOptions:
    grace_period: int | None
    propagation: str | None
    preconditions_uid: str | None
    preconditions_rv: str | None
    dry_run: bool = False           # DeleteOptions.dryRun (["All"]), as kubectl sends it


def _typed(opts: dict[str, Any], name: str, kind: type[_T]) -> _T:
    value = opts[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BadRequest(f"DeleteOptions.{name}: cannot decode {type(value).__name__} "
                         f"{json.dumps(value)[:40]} as {_GO_TYPES.get(kind, kind.__name__)}; "
                         "send the field as the DeleteOptions schema types it")
    return value


_GO_TYPES: dict[type, str] = {int: "int64", str: "string", dict: "Preconditions",
                              list: "[]string"}
