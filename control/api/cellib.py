"""CEL values and functions as Kubernetes has them, for cel-python: `to_cel` types a JSON
value by its schema (`number` as double, only declared fields, reserved or odd property names
escaped as `__namespace__`, `x__dash__y`; at a resource root apiVersion, kind and
metadata.name/generateName), and Kubernetes' CEL library functions celpy lacks.

kube-apiserver evaluates CRD validation rules with cel-go plus Kubernetes' libraries; the
rules of the Gateway API and Istio CRDs knet ships call `split` besides the CEL standard
(`size`, `has`, `all`, `exists_one`, `matches`, `duration`, `int`, ...). This module adds the
strings extension (split, join, lowerAscii, upperAscii, replace, trim, indexOf, lastIndexOf,
substring), the list library (isSorted, sum, min, max, indexOf, lastIndexOf), regex (find,
findAll), isURL / isIP / isCIDR, and the optional values that `optionalOldSelf` rules see
(`oldSelf.hasValue()`, `.value()`, `.orValue(x)`). Each function checks its argument types and
raises TypeError otherwise, which celpy reports as "no such overload", like cel-go.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import re2  # type: ignore[import-untyped]  # RE2, as cel-go (celpy's own dependency)
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError, base_functions

__all__ = ["FUNCTIONS", "KNOWN", "Optional", "escape", "to_cel"]

Str = celtypes.StringType
_RESERVED = frozenset({"true", "false", "null", "in", "as", "break", "const", "continue",
                       "else", "for", "function", "if", "import", "let", "loop", "package",
                       "namespace", "return", "var", "void", "while"})


class Optional:
    """`oldSelf` of an optionalOldSelf rule: a value or none."""

    def __init__(self, value: Any) -> None:
        self.inner = value

    def __repr__(self) -> str:
        return f"optional({self.inner!r})" if self.inner is not None else "optional.none()"


class UnorderedList(celtypes.ListType):
    """A `x-kubernetes-list-type: set | map` list: equality ignores order, as in Kubernetes
    (items are unique, so same length and each item in the other is equality)."""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, (list, celtypes.ListType)):
            raise TypeError(f"no such overload: ListType == {type(other)}")
        return len(self) == len(other) and all(any(x == y for y in other) for x in self)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None  # type: ignore[assignment]


def _str(x: Any) -> str:
    if not isinstance(x, str):
        raise TypeError(f"expected a string, got {type(x).__name__}")
    return str(x)


def _int(x: Any) -> int:
    if not isinstance(x, int) or isinstance(x, bool):
        raise TypeError(f"expected an int, got {type(x).__name__}")
    return int(x)


def split(s: Any, sep: Any, n: Any = None) -> Any:
    text, by = _str(s), _str(sep)
    limit = -1 if n is None else _int(n)
    if limit == 0:
        return celtypes.ListType([])
    if by == "":
        parts = list(text) if limit < 0 else list(text[:limit - 1]) + (
            [text[limit - 1:]] if len(text) >= limit else [])
    else:
        parts = text.split(by, -1 if limit < 0 else limit - 1)
    return celtypes.ListType([Str(p) for p in parts])


def join(items: Any, sep: Any = "") -> Any:
    if not isinstance(items, list):
        raise TypeError("join applies to a list of strings")
    return Str(_str(sep).join(_str(x) for x in items))


def index_of(target: Any, sub: Any, offset: Any = None) -> Any:
    if isinstance(target, list):
        return celtypes.IntType(next((i for i, x in enumerate(target) if x == sub), -1))
    text, start = _str(target), 0 if offset is None else _int(offset)
    if not 0 <= start <= len(text):
        raise ValueError(f"index out of range: {start}")
    return celtypes.IntType(text.find(_str(sub), start))


def last_index_of(target: Any, sub: Any, offset: Any = None) -> Any:
    if isinstance(target, list):
        found = [i for i, x in enumerate(target) if x == sub]
        return celtypes.IntType(found[-1] if found else -1)
    text = _str(target)
    end = len(text) if offset is None else _int(offset)
    return celtypes.IntType(text.rfind(_str(sub), 0, end + len(_str(sub))))


def substring(s: Any, start: Any, end: Any = None) -> Any:
    text = _str(s)
    a, b = _int(start), len(text) if end is None else _int(end)
    if not 0 <= a <= b <= len(text):
        raise ValueError(f"index out of range: {a}, {b}")
    return Str(text[a:b])


def replace(s: Any, old: Any, new: Any, n: Any = None) -> Any:
    return Str(_str(s).replace(_str(old), _str(new), -1 if n is None else _int(n)))


def _numbers(items: Any) -> list[Any]:
    if not isinstance(items, list):
        raise TypeError("expected a list")
    return list(items)


def is_sorted(items: Any) -> Any:
    xs = _numbers(items)
    return celtypes.BoolType(all(a <= b for a, b in itertools.pairwise(xs)))


def list_sum(items: Any) -> Any:
    xs = _numbers(items)
    if not xs:
        return celtypes.IntType(0)
    total = xs[0]
    for x in xs[1:]:
        total = total + x
    return total


def list_min(items: Any, *more: Any) -> Any:
    xs = _numbers(items) if not more else [items, *more]
    if not xs:
        raise ValueError("min called on an empty list")
    return min(xs)


def list_max(items: Any, *more: Any) -> Any:
    xs = _numbers(items) if not more else [items, *more]
    if not xs:
        raise ValueError("max called on an empty list")
    return max(xs)


def find(s: Any, pattern: Any) -> Any:
    m = re2.search(_str(pattern), _str(s))
    return Str(m.group(0) if m else "")


def find_all(s: Any, pattern: Any, n: Any = None) -> Any:
    found = [m.group(0) for m in re2.finditer(_str(pattern), _str(s))]
    if n is not None and _int(n) >= 0:
        found = found[:_int(n)]
    return celtypes.ListType([Str(f) for f in found])


def is_url(s: Any) -> Any:
    try:
        parts = urlsplit(_str(s))
    except ValueError:
        return celtypes.BoolType(False)
    return celtypes.BoolType(bool(parts.scheme) and (bool(parts.netloc) or
                                                     parts.path.startswith("/")))


def is_ip(s: Any) -> Any:
    try:
        ipaddress.ip_address(_str(s))
    except ValueError:
        return celtypes.BoolType(False)
    return celtypes.BoolType("%" not in _str(s))


def is_cidr(s: Any) -> Any:
    try:
        ipaddress.ip_network(_str(s), strict=False)
    except ValueError:
        return celtypes.BoolType(False)
    return celtypes.BoolType("/" in _str(s))


def _optional(method: str) -> Callable[..., Any]:
    def call(opt: Any, *args: Any) -> Any:
        if not isinstance(opt, Optional):
            raise TypeError(f"{method} applies to optional values")
        if method == "hasValue":
            return celtypes.BoolType(opt.inner is not None)
        if method == "orValue":
            return opt.inner if opt.inner is not None else args[0]
        if opt.inner is None:
            raise ValueError("optional.none() dereference")
        return opt.inner
    return call


def _logical(base: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """CEL's `||` / `&&` keeping cel-go's error when both sides fail (celpy says "no matching
    overload"): `size(self.a) > 0 || size(self.b) > 0` on neither reports `no such key: a`."""
    def op(x: Any, y: Any) -> Any:
        if isinstance(x, CELEvalError) and isinstance(y, CELEvalError):
            return x
        return base(x, y)
    return op


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "_||_": _logical(celtypes.logical_or), "_&&_": _logical(celtypes.logical_and),
    "split": split, "join": join, "indexOf": index_of, "lastIndexOf": last_index_of,
    "substring": substring, "replace": replace,
    "lowerAscii": lambda s: Str(re.sub("[A-Z]+", lambda m: m.group(0).lower(), _str(s))),
    "upperAscii": lambda s: Str(re.sub("[a-z]+", lambda m: m.group(0).upper(), _str(s))),
    "trim": lambda s: Str(_str(s).strip(" \t\n\r\v\f\u0085\u00a0")),
    "isSorted": is_sorted, "sum": list_sum, "min": list_min, "max": list_max,
    "find": find, "findAll": find_all,
    "isURL": is_url, "isIP": is_ip, "isCIDR": is_cidr,
    "hasValue": _optional("hasValue"), "value": _optional("value"),
    "orValue": _optional("orValue"),
}
_MACROS = frozenset({"has", "all", "exists", "exists_one", "map", "filter"})
# what a rule may call: CEL's standard functions, its macros and the ones above
KNOWN = frozenset(base_functions) | _MACROS | frozenset(FUNCTIONS)


def escape(name: str) -> str | None:
    """A property name as CEL expressions see it (`namespace` -> `__namespace__`, `x-y` ->
    `x__dash__y`); None for the names CEL cannot reach."""
    if name in _RESERVED:
        return f"__{name}__"
    if not re.fullmatch(r"[a-zA-Z_.\-/][a-zA-Z0-9_.\-/]*", name):
        return None
    return (name.replace("__", "__underscores__").replace(".", "__dot__")
            .replace("-", "__dash__").replace("/", "__slash__"))


def to_cel(s: Any, value: Any, *, root: bool = False) -> Any:
    """A JSON value as CEL sees it under schema `s`."""
    s = s if isinstance(s, dict) else {}
    if isinstance(value, dict):
        props = s.get("properties")
        if isinstance(props, dict) or root:
            out = {}
            for key, sub in value.items():
                if sub is None or (key not in (props or {}) and not (root and key in (
                        "apiVersion", "kind", "metadata"))):
                    continue
                name = escape(key)
                if name is None:
                    continue
                if root and key == "metadata" and isinstance(sub, dict):
                    sub_cel: Any = celtypes.MapType({
                        celtypes.StringType(k): celtypes.StringType(sub[k])
                        for k in ("name", "generateName") if isinstance(sub.get(k), str)})
                else:
                    sub_cel = to_cel((props or {}).get(key), sub)
                out[celtypes.StringType(name)] = sub_cel
            return celtypes.MapType(out)
        extra = s.get("additionalProperties")
        return celtypes.MapType({celtypes.StringType(k): to_cel(extra, v)
                                 for k, v in value.items() if v is not None})
    if isinstance(value, list):
        items = [to_cel(s.get("items"), v) for v in value]
        if s.get("x-kubernetes-list-type") in ("set", "map"):
            return UnorderedList(items)
        return celtypes.ListType(items)
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if isinstance(value, (int, float)) and s.get("type") == "number":
        return celtypes.DoubleType(float(value))
    return json_to_cel(value)
