"""Decoding untrusted request bodies within limits: nesting depth and YAML alias expansion.

Two attacks get past a plain size limit. A deeply nested document ({"a":{"a":... 100,000
times) drives a recursive decoder, or any recursive code after it, past the stack: orjson
before 3.9.15 segfaulted (CVE-2024-27454; later releases stop at 1024 levels), the json module
and Python code raise RecursionError (a 500). And a YAML "billion laughs" (aliases of aliases,
CVE-2019-11253 against kube-apiserver) stays under the body limit on the wire but expands to
gigabytes. Upstream, Go's encoding/json (and sigs.k8s.io/json, which kube-apiserver decodes
with) refuses more than 10000 levels ("exceeded max depth"), and go-yaml refuses "excessive
aliasing". knet is Python, whose default recursion limit is 1000 frames: so `MAX_DEPTH` is
256, deeper than any real object (a CRD schema nests a few dozen levels) and shallow enough for
every recursive step after decoding (deepcopy, merges, encoders) to keep its stack.

Key design choice: depth is checked BEFORE any parser runs, by a scan done in C (bytes.count,
replace, translate, split, itertools): a normal object opens fewer brackets than the limit and
costs two counts; only larger bodies pay a linear scan. YAML is composed by PyYAML's own
composer with a depth counter and an expanded-size meter per node (an alias costs what it
expands to), on libyaml's event parser when present, and in a worker thread for big bodies.
"""

from __future__ import annotations

import asyncio
import operator
from itertools import accumulate, count
from typing import Any

import yaml  # type: ignore[import-untyped]
from yaml.composer import Composer  # type: ignore[import-untyped]
from yaml.constructor import SafeConstructor  # type: ignore[import-untyped]
from yaml.events import AliasEvent  # type: ignore[import-untyped]
from yaml.nodes import MappingNode, Node, ScalarNode  # type: ignore[import-untyped]
from yaml.resolver import Resolver  # type: ignore[import-untyped]

from control.errors import BadRequest, RequestTooLarge

__all__ = ["MAX_DEPTH", "check_json_depth", "json_too_deep", "load_yaml"]

MAX_DEPTH = 256
# Bodies above this many bytes are composed off the event loop (pure parsing of a few MB of
# YAML takes a second or more).
YAML_THREAD_FROM = 64 * 1024

_DROP = bytes(b for b in range(256) if b not in b'{}[]"')
_SQUARE = bytes.maketrans(b"{}", b"[]")       # the kind of bracket does not matter to depth
_PEEL_PASSES = 8                  # `[[],[[],...` is `[[[...` after one
_STEP = bytes.maketrans(b"[]", b"\x02\x00")     # opener +1, closer -1 (after -1)


def json_too_deep(raw: bytes, limit: int = MAX_DEPTH) -> bool:
    """True if the JSON text nests objects and arrays more than `limit` levels deep.
    Brackets inside strings do not count; invalid JSON is judged as far as it goes."""
    if raw.count(b"{") + raw.count(b"[") <= limit:    # cannot nest deeper than it opens
        return False
    if b"\\" in raw:                 # escapes cannot end a string: drop them, pairs first
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    marks = raw.translate(_SQUARE, _DROP)
    if b'"' in marks:                # what is between quotes is inside a string; dropping
        marks = marks.replace(b'""', b"")      # two adjacent quotes keeps that parity
        if b'"' in marks:
            marks = b"".join(marks.split(b'"')[::2])
    peeled = 0                       # each pass drops the innermost pairs: one level less
    while len(marks) > limit - peeled:
        if b"[" * (limit - peeled + 1) in marks:
            return True              # the usual attack, found without counting
        if peeled == _PEEL_PASSES:
            levels = map(operator.sub, accumulate(marks.translate(_STEP)), count(1))
            return bool(max(levels) > limit - peeled)
        marks = marks.replace(b"[]", b"")
        peeled += 1
    return False


def check_json_depth(raw: bytes, *, what: str) -> None:
    if json_too_deep(raw):
        raise BadRequest(f"{what}: the JSON body nests objects and arrays more than "
                         f"{MAX_DEPTH} levels deep (exceeded max depth); no Kubernetes object "
                         "needs that many, so flatten it")


class _Refused(yaml.YAMLError):  # type: ignore[misc]
    """Raised inside the composer; `load_yaml` turns it into the API error it carries."""

    def __init__(self, error: BadRequest | RequestTooLarge) -> None:
        super().__init__(error.message)
        self.error = error


class _MeteredComposer(Composer):  # type: ignore[misc]
    """PyYAML's composer, counting depth and the size each node expands to (in bytes of
    JSON, roughly): an alias adds its anchor's whole expansion, so a few hundred bytes of
    nested aliases cannot stand for megabytes."""

    def __init__(self, what: str, max_bytes: int) -> None:
        Composer.__init__(self)
        self._what = what
        self._max_bytes = max_bytes
        self._depth = 0
        self._expanded = 0
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(AliasEvent):
            node = self.anchors.get(self.peek_event().anchor)
            if node is not None:
                self._alias(node)
            return Composer.compose_node(self, parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(BadRequest(
                f"{self._what}: the YAML body nests more than {MAX_DEPTH} levels deep "
                "(exceeded max depth); no Kubernetes object needs that many, so flatten it"))
        try:
            node = Composer.compose_node(self, parent, index)
        finally:
            self._depth -= 1
        self._sizes[id(node)] = self._size_of(node)
        return node

    def _alias(self, node: Node) -> None:
        size = self._sizes.get(id(node))
        if size is None:
            raise _Refused(BadRequest(
                f"{self._what}: the YAML body has an alias inside its own anchor (a recursive "
                "document, which no JSON object can be); expand it by hand"))
        self._expanded += size
        if self._expanded > self._max_bytes:
            raise _Refused(RequestTooLarge(
                f"{self._what}: Request entity too large: limit is {self._max_bytes}; the "
                "YAML body expands through its aliases to more than that (yaml: document "
                "contains excessive aliasing); send it with fewer aliases"))

    def _size_of(self, node: Node) -> int:
        sizes = self._sizes
        if isinstance(node, ScalarNode):
            return len(node.value) + 3
        if isinstance(node, MappingNode):
            return 2 + sum(sizes.get(id(k), 1) + sizes.get(id(v), 1) + 2 for k, v in node.value)
        return 2 + sum(sizes.get(id(item), 1) + 1 for item in node.value)


try:                                       # libyaml's event parser, when built in
    from yaml.cyaml import CParser as _Parser  # type: ignore[import-untyped]
except ImportError:                        # pragma: no cover (PyYAML without libyaml)
    class _Parser(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):  # type: ignore[no-redef,misc]
        def __init__(self, stream: bytes) -> None:
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)


class _Loader(_MeteredComposer, _Parser, SafeConstructor, Resolver):  # type: ignore[misc]
    """yaml.SafeLoader's parts (libyaml's parser when present) with the metered composer."""

    def __init__(self, stream: bytes, *, what: str, max_bytes: int) -> None:
        _Parser.__init__(self, stream)
        _MeteredComposer.__init__(self, what, max_bytes)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)


def _load(raw: bytes, what: str, max_bytes: int) -> Any:
    loader = _Loader(raw, what=what, max_bytes=max_bytes)
    try:
        return loader.get_single_data()
    except _Refused as refused:
        raise refused.error from None
    finally:
        loader.dispose()


async def load_yaml(raw: bytes, *, what: str, max_bytes: int) -> Any:
    """The one YAML document in `raw`, as yaml.safe_load reads it, refused with a 400 if it
    nests deeper than MAX_DEPTH and with a 413 if its aliases expand past `max_bytes`.
    Raises yaml.YAMLError for text that is not YAML."""
    if len(raw) < YAML_THREAD_FROM:
        return _load(raw, what, max_bytes)
    return await asyncio.to_thread(_load, raw, what, max_bytes)
