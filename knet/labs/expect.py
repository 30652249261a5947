"""Expectations on a command's output: pure functions, no cluster, so each rule is tested on
its own. `check` returns the list of failures (empty = pass), each a sentence a learner can
read: what was expected and what was seen.
"""

from __future__ import annotations

import re
from collections import Counter

from knet.labs.model import Expect


def values(expect: Expect, output: str) -> list[str]:
    """The lines the counting rules look at: group 1 (or the whole match) of `extract`, or
    every non-empty line."""
    if expect.extract:
        rx = re.compile(expect.extract, re.MULTILINE)
        return [m.group(1) if rx.groups else m.group(0) for m in rx.finditer(output)]
    return [ln.strip() for ln in output.splitlines() if ln.strip()]


def check(expect: Expect, output: str, exit_code: int, saved: dict[str, str]) -> list[str]:
    fails: list[str] = []
    want_code = 0 if expect.exit_code is None else expect.exit_code
    if exit_code != want_code:
        fails.append(f"exit code {exit_code}, expected {want_code}")
    fails += [f"output does not contain {s!r}" for s in expect.contains if s not in output]
    fails += [f"output contains {s!r}, it should not" for s in expect.not_contains
              if s in output]
    fails += [f"output does not match /{r}/" for r in expect.regex
              if not re.search(r, output, re.MULTILINE)]
    fails += _counts(expect, values(expect, output))
    text = output.strip()
    if expect.same_as is not None and text != saved.get(expect.same_as, "").strip():
        fails.append(f"output {_short(text)} differs from {expect.same_as}="
                     f"{_short(saved.get(expect.same_as, ''))}")
    if expect.differs_from is not None and text == saved.get(expect.differs_from, "").strip():
        fails.append(f"output {_short(text)} is the same as {expect.differs_from}, "
                     "it should differ")
    return fails


def _counts(expect: Expect, vals: list[str]) -> list[str]:
    fails: list[str] = []
    seen = Counter(vals)
    spread = ", ".join(f"{v}: {n}" for v, n in sorted(seen.items())) or "nothing"
    if expect.count is not None and len(vals) != expect.count:
        fails.append(f"{len(vals)} value(s), expected {expect.count}")
    if expect.distinct is not None and len(seen) != expect.distinct:
        fails.append(f"{len(seen)} distinct value(s) ({spread}), expected {expect.distinct}")
    if expect.min_distinct is not None and len(seen) < expect.min_distinct:
        fails.append(f"{len(seen)} distinct value(s) ({spread}), expected at least "
                     f"{expect.min_distinct}")
    if expect.max_distinct is not None and len(seen) > expect.max_distinct:
        fails.append(f"{len(seen)} distinct value(s) ({spread}), expected at most "
                     f"{expect.max_distinct}")
    ea = expect.each_appears
    if ea and (len(seen) != ea.values or any(n != ea.times for n in seen.values())):
        fails.append(f"expected {ea.values} value(s) seen {ea.times} time(s) each; "
                     f"saw {spread}")
    return fails


def _short(text: str) -> str:
    return repr(text if len(text) < 80 else text[:77] + "...")
