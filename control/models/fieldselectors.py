"""Field selectors (`fieldSelector=metadata.name=x,status.phase!=Succeeded`): parse the
string form kubectl sends and match objects on dotted paths. A missing field compares as "".
Re-exported by control.models.selectors; which fields each resource supports is a table here
so the API server can refuse the others as Kubernetes does (400 `field label not supported`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from control.errors import BadRequest

# ---- field selectors ---------------------------------------------------------------------

_COMMON_FIELDS = frozenset({"metadata.name", "metadata.namespace"})
SUPPORTED_FIELDS: dict[str, frozenset[str]] = {
    "pods": frozenset({"spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                       "spec.serviceAccountName", "spec.hostNetwork", "status.phase",
                       "status.podIP", "status.nominatedNodeName"}),
    "events": frozenset({"involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                         "involvedObject.uid", "involvedObject.apiVersion",
                         "involvedObject.resourceVersion", "involvedObject.fieldPath",
                         "reason", "reportingComponent", "source", "type"}),
    "secrets": frozenset({"type"}),
    "namespaces": frozenset({"status.phase"}),
    "nodes": frozenset({"spec.unschedulable"}),
    "replicasets": frozenset({"status.replicas"}),
    "replicationcontrollers": frozenset({"status.replicas"}),
    "jobs": frozenset({"status.successful"}),
}


@dataclass(frozen=True, slots=True)
class FieldTerm:
    path: str
    op: str                 # "=" or "!="
    value: str
    parts: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.path}{self.op}{_escape(self.value)}"


def _field_value(obj: Mapping[str, Any], parts: tuple[str, ...]) -> str:
    cur: Any = obj
    for part in parts:
        if not isinstance(cur, Mapping):
            return ""
        cur = cur.get(part)
        if cur is None:
            return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    if isinstance(cur, (dict, list)):
        return ""
    return str(cur)


@dataclass(frozen=True, slots=True)
class FieldSelector:
    terms: tuple[FieldTerm, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.terms

    def matches(self, obj: Mapping[str, Any]) -> bool:
        for t in self.terms:
            if (_field_value(obj, t.parts) == t.value) != (t.op == "="):
                return False
        return True

    def value_for(self, path: str) -> str | None:
        """The value an equality term requires for `path` (e.g. to narrow a list by
        namespace or node), or None."""
        for t in self.terms:
            if t.path == path and t.op == "=":
                return t.value
        return None

    def check_supported(self, resource: str) -> None:
        """Raise BadRequest for a field Kubernetes does not index for this resource."""
        allowed = _COMMON_FIELDS | SUPPORTED_FIELDS.get(resource, frozenset())
        for t in self.terms:
            if t.path not in allowed:
                raise BadRequest(f'field label not supported: {t.path} (fieldSelector '
                                 f'"{self}" on {resource}; supported: '
                                 f'{", ".join(sorted(allowed))})')

    def __str__(self) -> str:
        return ",".join(str(t) for t in self.terms)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _split_terms(text: str) -> list[str]:
    terms, cur, i = [], [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur.append(text[i:i + 2])
            i += 2
            continue
        if c == ",":
            terms.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    terms.append("".join(cur))
    return terms


def _unescape(value: str, text: str) -> str:
    out, i = [], 0
    while i < len(value):
        c = value[i]
        if c == "\\":
            if i + 1 >= len(value) or value[i + 1] not in "\\,=":
                raise BadRequest(f'invalid field selector "{text}": invalid escape '
                                 f'sequence in "{value}"')
            out.append(value[i + 1])
            i += 2
            continue
        if c in ",=":
            raise BadRequest(f'invalid field selector "{text}": unescaped {c!r} in '
                             f'value "{value}"; escape it as "\\{c}"')
        out.append(c)
        i += 1
    return "".join(out)


_FIELD_OP = re.compile(r"(!=|==|=)")


def parse_field_selector(text: str) -> FieldSelector:
    """Parse `metadata.name=x,status.phase!=Succeeded` (`==` too; `\\,` `\\=` escapes)."""
    if not text or not text.strip():
        return FieldSelector()
    terms: list[FieldTerm] = []
    for raw in _split_terms(text):
        if not raw.strip():
            raise BadRequest(f'invalid field selector "{text}": empty term')
        m = _FIELD_OP.search(raw)
        if m is None:
            raise BadRequest(f'invalid field selector "{text}": term "{raw}" '
                             "has no operator; "
                             "use 'field=value', 'field==value' or 'field!=value'")
        path = raw[:m.start()].strip()
        if not path:
            raise BadRequest(f'invalid field selector "{text}": term "{raw}" '
                             "has no field name")
        op = "!=" if m.group(1) == "!=" else "="
        value = _unescape(raw[m.end():], text)
        terms.append(FieldTerm(path, op, value, tuple(path.split("."))))
    return FieldSelector(tuple(terms))
