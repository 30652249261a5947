"""Request matching and weighted picks over the route table: pure functions, no sockets.

`find_route(routes, method, target, headers)` returns the first route whose any match fits
(the lists are already in precedence order: Gateway API's for HTTPRoutes, the written
order for a VirtualService) and which match it was. `pick_backend(route, r)` draws a
weighted backend from a number r in [0, 1) and says which bucket it fell in, so the flow
record can show the split. Regexes are compiled once per pattern (a small cache).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from urllib.parse import parse_qsl, unquote

from knet.mesh.types import Backend, HeaderMatch, Match, Route, StringMatch

__all__ = ["find_route", "gateway_precedence", "match_string", "pick_backend"]


@lru_cache(maxsize=4096)
def _regex(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE if ignore_case else 0)


def match_string(m: StringMatch, value: str) -> bool:
    v, want = value, m.value
    if m.ignore_case and m.kind != "regex":
        v, want = v.lower(), want.lower()
    if m.kind == "exact":
        return v == want
    if m.kind == "prefix":
        return v.startswith(want)
    if m.kind == "path-prefix":
        want = want.rstrip("/")
        return not want or v == want or v.startswith(want + "/")
    return _regex(m.value, m.ignore_case).fullmatch(value) is not None


def _headers_fit(wanted: Sequence[HeaderMatch], headers: Mapping[str, str],
                 method: str) -> bool:
    for h in wanted:
        value = method if h.name == ":method" else headers.get(h.name)
        fits = value is not None and (h.match is None or match_string(h.match, value))
        if fits == h.invert:
            return False
    return True


def _query_fits(wanted: Sequence[tuple[str, StringMatch]], query: str) -> bool:
    if not wanted:
        return True
    params: dict[str, str] = {}
    for k, v in parse_qsl(query, keep_blank_values=True):
        params.setdefault(k, v)  # the first value counts, as Envoy matches it
    return all(k in params and match_string(m, params[k]) for k, m in wanted)


def matches(m: Match, method: str, path: str, query: str, headers: Mapping[str, str]) -> bool:
    if m.method is not None and m.method != method:
        return False
    if m.path is not None and not match_string(m.path, path):
        return False
    return _headers_fit(m.headers, headers, method) and _query_fits(m.query, query)


def find_route(routes: Sequence[Route], method: str, target: str,
               headers: Mapping[str, str]) -> tuple[Route, Match] | None:
    """The first route (and its match) for a request; `headers` keyed in lower case."""
    raw_path, _, query = target.partition("?")
    path = unquote(raw_path) if "%" in raw_path else raw_path
    for route in routes:
        for m in route.matches:
            if matches(m, method, path, query, headers):
                return route, m
    return None


def pick_backend(route: Route, r: float) -> tuple[Backend, int] | None:
    """The backend a number r in [0, 1) falls on, by weight, and its index (the bucket);
    None when every weight is zero."""
    total = sum(b.weight for b in route.backends)
    if total <= 0:
        return None
    point = r * total
    for i, b in enumerate(route.backends):
        if point < b.weight:
            return b, i
        point -= b.weight
    last = max(i for i, b in enumerate(route.backends) if b.weight > 0)
    return route.backends[last], last


def gateway_precedence(m: Match) -> tuple[int, int, int, int, int]:
    """Gateway API's order among matches (smaller first): an Exact path, then the longest
    PathPrefix (a RegularExpression after both), then a method, then more header matches,
    then more query matches. Ties go to the oldest route, then by name, then rule order:
    the caller sorts stably on (this, age, name, position)."""
    p = m.path
    kind = 0 if p is not None and p.kind == "exact" else 1 if p is None or p.kind != "regex" \
        else 2
    length = len(p.value) if p is not None else 0
    return (kind, -length, 0 if m.method else 1, -len(m.headers), -len(m.query))
