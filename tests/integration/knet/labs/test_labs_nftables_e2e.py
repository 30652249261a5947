"""Labs in both kube-proxy modes: the labs below also pass on a cluster whose kube-proxies run
in nftables mode (`knet up --proxy-mode nftables`; steps marked `mode:` in a lab.yaml are
the mode's own checks), and a lab's check still fails there when its behaviour is broken."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_labs_e2e import LAB_ENV, knet

# labs whose lesson holds in both modes (06, 07 and 34 carry nftables-mode steps of their own)
BOTH_MODES = ["04", "06", "07", "08", "12", "33", "34"]


@pytest.fixture(scope="module")
def nft_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    d = tmp_path_factory.mktemp("labs-nft") / "state"
    r = knet("up", "--nodes", "2", "--proxy-mode", "nftables", "--state-dir", str(d),
             env=LAB_ENV, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        yield d
    finally:
        knet("down", "--state-dir", str(d))


@pytest.mark.parametrize("lab", BOTH_MODES)
def test_lab_passes_in_nftables_mode(nft_state: Path, lab: str) -> None:
    r = knet("lab", "check", lab, "--reuse", "--state-dir", str(nft_state))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"lab {lab} passed" in r.stdout, r.stdout


def test_lab_06_fails_in_nftables_mode_when_every_request_is_pinned(nft_state: Path) -> None:
    r = knet("lab", "check", "06", "--reuse", "--state-dir", str(nft_state),
             "--set", "affinity=ClientIP")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "lab 06 FAILED" in r.stdout and "distinct value(s)" in r.stdout, r.stdout


def test_lab_34_fails_in_nftables_mode_when_the_nodeport_masquerades(nft_state: Path) -> None:
    r = knet("lab", "check", "34", "--reuse", "--state-dir", str(nft_state),
             "--set", "policy=Cluster")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "lab 34 FAILED" in r.stdout and "RemoteAddr: 172.18.0.1:" in r.stdout, r.stdout
