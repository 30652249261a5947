"""The CLI's shape: every command module registers, and bad usage is a clear error."""

from __future__ import annotations

import pytest

from knet.cli.main import build_parser, main


def test_sandbox_is_a_command() -> None:
    parser = build_parser()
    args = parser.parse_args(["sandbox", "--", "true"])
    assert args.command == "sandbox"


def test_sandbox_without_command_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sandbox"]) == 1
    err = capsys.readouterr().err
    assert "no command given" in err or "needs root" in err
