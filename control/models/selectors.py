"""Label and field selectors: parse the string forms kubectl sends (`labelSelector=`,
`fieldSelector=`) and the object forms of specs, and match objects against them.

A LabelSelector is an immutable tuple of requirements (key, operator, values) sorted by key,
so `str()` gives Kubernetes' canonical string form (used as Scale `status.selector`).
Matching is plain dict look-ups: it runs for every object of every filtered list and watch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from control.errors import BadRequest
from control.models import names
from control.models.fieldselectors import (
    SUPPORTED_FIELDS,
    FieldSelector,
    FieldTerm,
    parse_field_selector,
)

__all__ = [
    "SPEC_OPERATORS",
    "SUPPORTED_FIELDS",
    "FieldSelector",
    "FieldTerm",
    "LabelSelector",
    "Requirement",
    "parse_field_selector",
    "parse_label_selector",
    "selector_from_labels",
    "selector_from_spec",
]

# Operators: "=" (also "=="), "!=", "in", "notin", "exists", "!" (does not exist), "gt", "lt".
_SET_OPS = ("in", "notin")
SPEC_OPERATORS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.op
        if op == "=":
            return labels.get(self.key) == self.values[0]
        if op == "!=":
            return labels.get(self.key) != self.values[0]
        if op == "exists":
            return self.key in labels
        if op == "!":
            return self.key not in labels
        if op == "in":
            return self.key in labels and labels[self.key] in self.values
        if op == "notin":
            return labels.get(self.key) not in self.values
        value = labels.get(self.key)
        if value is None:
            return False
        try:
            number = int(value)
        except ValueError:
            return False
        bound = int(self.values[0])
        return number > bound if op == "gt" else number < bound

    def __str__(self) -> str:
        op = self.op
        if op == "exists":
            return self.key
        if op == "!":
            return "!" + self.key
        if op in _SET_OPS:
            return f"{self.key} {op} ({','.join(sorted(self.values))})"
        sym = {"gt": ">", "lt": "<"}.get(op, op)
        return f"{self.key}{sym}{self.values[0]}"


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A conjunction of requirements. Empty matches everything; `nothing()` matches nothing."""
    requirements: tuple[Requirement, ...] = ()
    match_nothing: bool = False

    @classmethod
    def nothing(cls) -> LabelSelector:
        return cls((), True)

    @property
    def is_empty(self) -> bool:
        return not self.requirements and not self.match_nothing

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.match_nothing:
            return False
        labels = labels or {}
        for req in self.requirements:
            if not req.matches(labels):
                return False
        return True

    def equality_map(self) -> dict[str, str] | None:
        """The selector as a plain `{key: value}` map, or None if it uses other operators."""
        if self.match_nothing or any(r.op != "=" for r in self.requirements):
            return None
        return {r.key: r.values[0] for r in self.requirements}

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def _sorted(reqs: list[Requirement]) -> LabelSelector:
    return LabelSelector(tuple(sorted(reqs, key=lambda r: r.key)))


def _check_key(key: str, where: str) -> None:
    errs = names.qualified_name(key)
    if errs:
        raise BadRequest(f"unable to parse requirement: invalid label key {key!r} in "
                         f"selector {where!r}: {'; '.join(errs)}")


def _check_value(value: str, where: str) -> None:
    errs = names.label_value(value)
    if errs:
        raise BadRequest(f"unable to parse requirement: invalid label value {value!r} in "
                         f"selector {where!r}: {'; '.join(errs)}")


# ---- string form -------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(==|!=|=|!|\(|\)|,|>|<)|([^\s,()!=<>]+))")


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            break                      # only trailing whitespace is left
        out.append(m.group(1) or m.group(2))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def fail(self, what: str) -> BadRequest:
        return BadRequest(f"unable to parse label selector {self.text!r}: {what}")

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> str | None:
        tok = self.peek()
        self.i += 1
        return tok

    def parse(self) -> LabelSelector:
        reqs: list[Requirement] = []
        while self.peek() is not None:
            reqs.append(self.requirement())
            sep = self.take()
            if sep not in (None, ","):
                raise self.fail(f"expected ',' after requirement {str(reqs[-1])!r}, got {sep!r}")
            if sep == "," and self.peek() is None:
                raise self.fail("trailing ','")
        return _sorted(reqs)

    def requirement(self) -> Requirement:
        tok = self.take()
        if tok == "!":
            key = self.take()
            if key is None or not _is_word(key):
                raise self.fail(f"expected a key after '!', got {key!r}")
            _check_key(key, self.text)
            return Requirement(key, "!")
        if tok is None or not _is_word(tok):
            raise self.fail(f"expected a label key, got {tok!r}")
        key = tok
        _check_key(key, self.text)
        op = self.peek()
        if op in (None, ","):
            return Requirement(key, "exists")
        self.take()
        if op in ("=", "==", "!="):
            return Requirement(key, "!=" if op == "!=" else "=", (self.value(key, op),))
        if op in (">", "<"):
            value = self.take()
            if value is None or not value.lstrip("-").isdigit():
                raise self.fail(f"for {key!r} {op}: expected an integer, got {value!r}")
            return Requirement(key, "gt" if op == ">" else "lt", (value,))
        if op in _SET_OPS:
            return Requirement(key, op, self.value_set(key, op))
        raise self.fail(f"unexpected {op!r} after key {key!r}; expected one of "
                        "'=', '==', '!=', 'in', 'notin', ','")

    def value(self, key: str, op: str) -> str:
        tok = self.peek()
        if tok is None or tok == ",":
            return ""                  # `a=` selects an empty value, as in Kubernetes
        if not _is_word(tok):
            raise self.fail(f"expected a value after {key!r}{op}, got {tok!r}")
        self.take()
        _check_value(tok, self.text)
        return tok

    def value_set(self, key: str, op: str) -> tuple[str, ...]:
        if self.take() != "(":
            raise self.fail(f"expected '(' after {key!r} {op}")
        values: list[str] = []
        while True:
            tok = self.take()
            if tok in (",", ")") or tok is None:
                values.append("")      # an empty member, as in `a in (,b)`
            else:
                if not _is_word(tok):
                    raise self.fail(f"unexpected {tok!r} in the values of {key!r} {op}")
                _check_value(tok, self.text)
                values.append(tok)
                tok = self.take()
            if tok == ")":
                break
            if tok != ",":
                raise self.fail(f"missing ')' to close the values of {key!r} {op}")
        return tuple(sorted(set(values)))


def _is_word(tok: str) -> bool:
    return tok not in ("==", "!=", "=", "!", "(", ")", ",", ">", "<")


def parse_label_selector(text: str) -> LabelSelector:
    """Parse `a=b,c!=d,e in (x,y),f notin (z),g,!h`; raise BadRequest naming the bad part."""
    if not text or not text.strip():
        return LabelSelector()
    return _Parser(text).parse()


# ---- object form -------------------------------------------------------------------------

def selector_from_labels(labels: Mapping[str, str] | None) -> LabelSelector:
    """The equality selector of a plain `{key: value}` map (Services, RCs, nodeSelector)."""
    return _sorted([Requirement(k, "=", (str(v),)) for k, v in (labels or {}).items()])


def selector_from_spec(spec: Mapping[str, Any] | None) -> LabelSelector:
    """The selector of `{matchLabels, matchExpressions}` or of a plain map `{"app": "web"}`.

    An empty or None spec gives the empty selector (matches everything); the caller decides
    what None means for its kind (a Service without selector selects nothing)."""
    if not spec:
        return LabelSelector()
    if not set(spec) <= {"matchLabels", "matchExpressions"}:
        return selector_from_labels(spec)
    labels, exprs = spec.get("matchLabels") or {}, spec.get("matchExpressions") or []
    if not isinstance(labels, Mapping):
        raise BadRequest(f"matchLabels: must be a map of labels, got {labels!r}")
    if not isinstance(exprs, list):
        raise BadRequest(f"matchExpressions: must be a list, got {exprs!r}")
    reqs = [Requirement(str(k), "=", (str(v),)) for k, v in labels.items()]
    for i, expr in enumerate(exprs):
        reqs.append(_expression(i, expr))
    return _sorted(reqs)


def _expression(i: int, expr: Any) -> Requirement:
    where = f"matchExpressions[{i}]"
    if not isinstance(expr, Mapping):
        raise BadRequest(f"{where}: must be an object with key, operator and values")
    key, operator, raw = expr.get("key") or "", expr.get("operator") or "", expr.get("values")
    if not key or not isinstance(key, str):
        raise BadRequest(f"{where}.key: Required value: a label key")
    if raw is not None and not isinstance(raw, list):
        raise BadRequest(f"{where}.values: must be a list of strings, got {raw!r}")
    values = tuple(sorted({str(v) for v in raw or ()}))
    op = SPEC_OPERATORS.get(operator) if isinstance(operator, str) else None
    if op is None:
        raise BadRequest(f"{where}.operator: Unsupported value: {operator!r}: supported values: "
                         '"In", "NotIn", "Exists", "DoesNotExist"')
    if op in _SET_OPS and not values:
        raise BadRequest(f"{where}.values: Required value: must be specified when `operator` "
                         "is 'In' or 'NotIn'")
    if op not in _SET_OPS and values:
        raise BadRequest(f"{where}.values: Forbidden: may not be specified when `operator` "
                         "is 'Exists' or 'DoesNotExist'")
    return Requirement(key, op, values)
