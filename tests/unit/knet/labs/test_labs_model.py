"""The lab.yaml schema refuses malformed steps with a message naming the file and field, and
every lab shipped in labs/ is valid: its manifests exist and every ${variable} it uses is
defined (by vars, a save, a set, or the runner)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from knet.errors import KnetError
from knet.labs.model import Lab, Step, load_lab
from knet.labs.session import catalog

BUILTIN = {"ns", "lab_dir", "state_dir", "knet"}


def test_a_step_does_exactly_one_thing() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Step.model_validate({"say": "hi", "sleep": 1})
    with pytest.raises(ValueError, match="exactly one"):
        Step.model_validate({"title": "nothing"})
    with pytest.raises(ValueError, match="expect belongs"):
        Step.model_validate({"sleep": 1, "expect": {"contains": "x"}})
    with pytest.raises(ValueError, match="run needs exactly one"):
        Step.model_validate({"run": {"pod": "a", "host": "true", "cmd": "x"}})
    with pytest.raises(ValueError, match="wait needs exactly one"):
        Step.model_validate({"wait": {"timeout": 3}})
    with pytest.raises(ValueError, match="background needs a name"):
        Step.model_validate({"background": {"host": "sleep 1"}})
    assert Step.model_validate({"run": {"pod": "a", "cmd": "true"}}).action == "run"


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValueError):
        Step.model_validate({"run": {"host": "true"}, "expect": {"contians": "typo"}})


def test_load_lab_error_names_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "lab.yaml"
    bad.write_text("title: t\nsteps:\n  - {say: a, sleep: 1}\n")
    with pytest.raises(KnetError, match=r"lab\.yaml: steps\.0"):
        load_lab(bad)


def _used_vars(text: str) -> set[str]:
    return set(re.findall(r"\$\{(\w+)\}", text))


def _defined(lab: Lab) -> set[str]:
    names = set(lab.vars) | BUILTIN
    for step in lab.steps + lab.cleanup:
        if step.save:
            names.add(step.save)
        if step.set:
            names |= set(step.set)
    return names


@pytest.mark.parametrize("entry", catalog(), ids=lambda e: e.dir.name)
def test_every_shipped_lab_is_complete(entry) -> None:  # type: ignore[no-untyped-def]
    lab = entry.load()
    assert (entry.dir / "README.md").read_text().startswith("# Lab ")
    used: set[str] = set()
    for step in lab.steps + lab.cleanup:
        if step.apply:
            used |= _used_vars((entry.dir / step.apply).read_text())
    used |= _used_vars((entry.dir / "lab.yaml").read_text())
    assert used <= _defined(lab), f"undefined: {used - _defined(lab)}"
    kinds = {s.action for s in lab.steps}
    assert "run" in kinds or "join" in kinds, "a lab without real traffic checks nothing"
    assert any(s.expect for s in lab.steps), "a lab without expectations cannot fail"


def test_the_catalog_is_numbered_without_gaps() -> None:
    numbers = [e.number for e in catalog()]
    assert len(numbers) >= 18
    assert numbers == [f"{i:02d}" for i in range(1, len(numbers) + 1)]
