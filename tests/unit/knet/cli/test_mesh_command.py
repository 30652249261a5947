"""`knet mesh stat`'s usage errors: a bad target or window is a clear message, exit 1,
before any cluster is contacted; without a cluster the state dir is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from knet.cli.main import main


@pytest.mark.parametrize(("argv", "words"), [
    (["mesh", "stat", "pod/x"], "give svc, svc/NAME, deploy or deploy/NAME"),
    (["mesh", "stat", "--window", "soon"], "--window 'soon': give a duration"),
    (["mesh", "stat", "--window", "100"], "give a duration like 30s"),
])
def test_bad_usage(argv: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 1
    assert words in capsys.readouterr().err


def test_no_cluster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mesh", "stat", "--state-dir", str(tmp_path)]) == 1
    assert f"no cluster at {tmp_path}" in capsys.readouterr().err
