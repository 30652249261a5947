"""The depth pre-scan and the metered YAML loader on their own: the scan agrees with the real
nesting depth of random JSON (brackets and escapes inside strings included), and the loader
reads what yaml.safe_load reads, within its limits."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from control.api.untrusted import MAX_DEPTH, json_too_deep, load_yaml
from control.errors import BadRequest, RequestTooLarge

MB = 1024 * 1024


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


TRICKY = ["x", '[{"]}\\', "\\\\", '"', "}}}]]]", "[[[{{{", 1, None, "\\u005b"]


def random_json(rng: random.Random, levels: int) -> Any:
    r = rng.random()
    if levels == 0 or r < 0.35:
        return rng.choice(TRICKY)
    if r < 0.7:
        return [random_json(rng, levels - 1) for _ in range(rng.randint(0, 2))]
    return {rng.choice(["a", "[", '\\"{']) + str(i): random_json(rng, levels - 1)
            for i in range(rng.randint(0, 2))}


def test_the_scan_agrees_with_the_real_depth() -> None:
    rng = random.Random(10)
    for _ in range(1500):
        doc = random_json(rng, rng.randint(1, 30))
        raw, real = json.dumps(doc).encode(), depth(doc)
        for limit in {0, 1, 2, 5, 12, max(real - 1, 0), real, real + 1}:
            assert json_too_deep(raw, limit) == (real > limit), (limit, real, raw[:200])


@pytest.mark.parametrize("raw", [b"[" * 5_000_000, b'{"a":' * 600_000, b"[[]," * 700_000,
                                 b'{"a":[{},' * 300_000, b'[["\\"]",' * 300_000])
def test_the_usual_attacks_are_too_deep(raw: bytes) -> None:
    assert json_too_deep(raw)


def test_wide_documents_are_not_too_deep() -> None:
    wide = json.dumps([{"k": [i, {"v": "[" * 300}]} for i in range(50_000)]).encode()
    assert not json_too_deep(wide)


DOCS = [b"a: 1\nb: [x, y]\n", b"m: &m {a: 1}\nn:\n  <<: *m\n  b: 2\n",
        b"- &s hello\n- *s\n- {k: *s}\n", b'{"json": ["flow", 1.5, true, null]}',
        b"on: yes\noff: no\nt: 2024-01-01\n"]


@pytest.mark.parametrize("raw", DOCS)
async def test_the_loader_reads_what_safe_load_reads(raw: bytes) -> None:
    assert await load_yaml(raw, what="t", max_bytes=MB) == yaml.safe_load(raw)


async def test_one_big_scalar_aliased_many_times_is_too_large() -> None:
    raw = b"a: &a " + b"x" * 100_000 + b"\nb: [" + b", ".join([b"*a"] * 40) + b"]\n"
    with pytest.raises(RequestTooLarge, match="excessive aliasing"):
        await load_yaml(raw, what="t", max_bytes=3 * MB)


async def test_big_bodies_are_loaded_off_the_loop_with_the_same_limits() -> None:
    big = b"k: [" + b", ".join([b"v"] * 40_000) + b"]\n"
    assert len((await load_yaml(big, what="t", max_bytes=3 * MB))["k"]) == 40_000
    deep = b"pad: " + b"p" * 70_000 + b"\nx: " + b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)
    with pytest.raises(BadRequest, match="levels deep"):
        await load_yaml(deep, what="t", max_bytes=3 * MB)


async def test_not_yaml_is_a_yaml_error() -> None:
    with pytest.raises(yaml.YAMLError):
        await load_yaml(b"a: [\n", what="t", max_bytes=MB)
