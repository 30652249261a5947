"""Small helpers of the object layer: wire encoding, resource look-up, timestamps, names,
continue tokens and Kubernetes' error messages.

Objects are stored as compact JSON without `metadata.resourceVersion`; reading one sets it
from the store's `mod_revision`, so the revision is never stale inside a stored value.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from control.errors import BadRequest, Conflict, NotFound
from control.models import resources
from control.models.resources import ResourceInfo
from control.store.base import KV

Obj = dict[str, Any]
Now = Callable[[], datetime]

_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339(t: datetime, *, plus: float = 0) -> str:
    if plus:
        t = t + timedelta(seconds=plus)
    if t.tzinfo is not UTC:
        t = t.astimezone(UTC)
    global _last_stamp
    second = (t.year, t.month, t.day, t.hour, t.minute, t.second)
    if second != _last_stamp[0]:      # one strftime per second, not per write
        _last_stamp = (second, t.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return _last_stamp[1]


_last_stamp: tuple[tuple[int, ...], str] = ((), "")


def resource(plural: str) -> ResourceInfo:
    try:
        return resources.by_plural(plural)
    except KeyError:
        raise NotFound(f"the server could not find the requested resource ({plural}); "
                       "run 'kubectl api-resources' to list what this server serves") from None


_HEAD = b'{"metadata":{'


def encode(obj: Obj) -> bytes:
    """Compact JSON with `metadata` first and no resourceVersion, so that `with_revision`
    can splice the revision in without parsing."""
    md = obj.get("metadata")
    if isinstance(md, dict) and "resourceVersion" in md:
        md = {k: v for k, v in md.items() if k != "resourceVersion"}
    out = {"metadata": md}
    for key, value in obj.items():
        if key != "metadata":
            out[key] = value
    return dumps(out)


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
# What json refuses, orjson must refuse too (it would write datetimes and dataclasses).
_PASSTHROUGH = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON, as json.dumps(separators=(",", ":"), ensure_ascii=False) writes it,
    by orjson (10x faster); the json module for what orjson refuses (non-string keys, ints
    beyond 64 bits), so nothing that encoded before fails now."""
    try:
        return orjson.dumps(obj, option=_PASSTHROUGH)
    except TypeError:
        return _dumps(obj).encode()


def loads(raw: bytes | str) -> Any:
    """JSON text to Python, by orjson; the json module for what orjson refuses (UTF-16/32
    bodies, NaN, ints beyond 64 bits), with json's error if neither reads it."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def with_revision(value: bytes, revision: int) -> bytes:
    """The stored JSON of an object with `metadata.resourceVersion` set, by splicing."""
    if value.startswith(_HEAD) and value[13:14] != b"}":
        return b'%s"resourceVersion":"%d",%s' % (_HEAD, revision, value[13:])
    return dumps(decode_at(value, revision))


def decode(kv: KV) -> Obj:
    obj: Obj = loads(kv.value)
    obj["metadata"]["resourceVersion"] = str(kv.mod_revision)
    return obj


def decode_at(value: bytes, revision: int) -> Obj:
    obj: Obj = loads(value)
    obj["metadata"]["resourceVersion"] = str(revision)
    return obj


def generate_name(prefix: str, rng: random.Random) -> str:
    return prefix + "".join(rng.choice(_NAME_CHARS) for _ in range(5))


def not_found(info: ResourceInfo, name: str) -> NotFound:
    return NotFound(f'{info.plural} "{name}" not found', kind=info.plural, name=name,
                    group=info.group)


def conflict(info: ResourceInfo, name: str) -> Conflict:
    return Conflict(f'Operation cannot be fulfilled on {info.plural} "{name}": the object has '
                    "been modified; please apply your changes to the latest version and try "
                    "again", kind=info.plural, name=name, group=info.group)


def parse_revision(text: str | None, *, what: str = "resourceVersion") -> int:
    if text in (None, ""):
        return 0
    try:
        value = int(str(text))
    except ValueError:
        raise BadRequest(f"{what} {text!r} is not a valid resource version: it must be the "
                         "decimal revision this server returned") from None
    if value < 0:
        raise BadRequest(f"{what} {text!r} must not be negative")
    return value


def make_continue(revision: int, last_key: str) -> str:
    raw = json.dumps({"v": 1, "rv": revision, "start": last_key}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def read_continue(token: str, prefix: str) -> tuple[int, str]:
    try:
        pad = "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(token + pad))
        revision, start = int(data["rv"]), str(data["start"])
        if not 0 <= revision < 2**64:                   # a uint64, as any resourceVersion
            raise ValueError(revision)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise BadRequest(f"continue token {token!r} is not valid: pass the token this "
                         "server returned in metadata.continue, unchanged") from None
    if not start.startswith(prefix):
        raise BadRequest("continue token belongs to another list; restart the list "
                         "without it")
    return revision, start
