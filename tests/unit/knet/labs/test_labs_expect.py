"""Each expectation rule passes on the output it describes and fails, with a readable
message, on output that breaks it."""

from __future__ import annotations

from knet.labs.expect import check
from knet.labs.model import Expect

RR = "\n".join(f"Hostname: web-{i % 3}" for i in range(30))
PINNED = "\n".join("Hostname: web-1" for _ in range(30))


def fails(raw: dict, out: str, code: int = 0, saved: dict | None = None) -> list[str]:
    return check(Expect.model_validate(raw), out, code, saved or {})


def test_each_appears_passes_on_even_spread_and_fails_on_pinned() -> None:
    rule = {"extract": r"Hostname: (\S+)", "each_appears": {"values": 3, "times": 10}}
    assert fails(rule, RR) == []
    msg = fails(rule, PINNED)
    assert msg and "web-1: 30" in msg[0]


def test_distinct_and_count() -> None:
    assert fails({"extract": r"Hostname: (\S+)", "distinct": 1, "count": 30}, PINNED) == []
    assert fails({"extract": r"Hostname: (\S+)", "distinct": 1}, RR)
    assert fails({"count": 2}, "a\n\nb\n") == []  # blank lines do not count
    assert fails({"min_distinct": 2}, "a\na\n")
    assert fails({"max_distinct": 1}, "a\nb\n")


def test_contains_not_contains_regex_accept_one_or_many() -> None:
    assert fails({"contains": "ttl=64"}, "64 bytes: ttl=64") == []
    assert fails({"contains": ["a", "zz"]}, "abc") == ["output does not contain 'zz'"]
    assert fails({"not_contains": "via"}, "10.0.0.1 via 10.0.0.254")
    assert fails({"regex": r"^default via \S+ dev eth0"}, "x\ndefault via 1.2.3.4 dev eth0") == []
    assert fails({"regex": [r"^nope$"]}, "yes")


def test_exit_code_defaults_to_zero() -> None:
    assert fails({}, "", code=1) == ["exit code 1, expected 0"]
    assert fails({"exit_code": 7}, "", code=7) == []
    assert fails({"exit_code": 7}, "", code=0)


def test_same_as_and_differs_from_saved_values() -> None:
    saved = {"before": "pod/a\npod/b"}
    assert fails({"same_as": "before"}, "pod/a\npod/b\n", saved=saved) == []
    assert fails({"differs_from": "before"}, "pod/a\npod/b\n", saved=saved)
    assert fails({"differs_from": "before"}, "pod/a\npod/c", saved=saved) == []


def test_extract_without_group_keeps_whole_match() -> None:
    assert fails({"extract": r"\d{3}", "each_appears": {"values": 1, "times": 2}},
                 "code 200\ncode 200") == []
