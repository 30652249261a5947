"""`knet control`: its options, and bad ones refused with a message that says what to use."""

from __future__ import annotations

from pathlib import Path

import pytest

from knet.cli.main import build_parser, main


def test_control_options(tmp_path: Path) -> None:
    args = build_parser().parse_args(["control", "--state-dir", str(tmp_path), "--listen",
                                      "172.18.0.1:6443", "--store", "memory://"])
    assert (args.command, args.listen, args.store) == ("control", "172.18.0.1:6443",
                                                       "memory://")
    assert args.state_dir == tmp_path and not args.no_controllers


def test_bad_listen_address(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["control", "--state-dir", str(tmp_path), "--listen", "localhost"]) == 1
    assert "expected HOST:PORT such as 127.0.0.1:6443" in capsys.readouterr().err


def test_bad_store_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["control", "--state-dir", str(tmp_path), "--listen", "127.0.0.1:1",
                 "--store", "redis://x"]) == 1
    assert "unknown scheme 'redis'" in capsys.readouterr().err
