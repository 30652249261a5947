"""Bad input at the command line, as a user meets it: an unknown lab lists the real ones, a lab
or the demo refuses to start over a running cluster and says the way out, and the everyday
`knet get/apply/...` commands run the real kubectl (here a recording stand-in) with the
cluster's kubeconfig, or say how to install kubectl."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from knet.cli.main import main
from knet.cluster.procs import ProcRecord, start_time
from knet.cluster.state import ClusterRecord


def running_cluster(state_dir: Path) -> None:
    """A cluster record whose control process is alive (this test process stands in)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    me = ProcRecord(role="control", pid=os.getpid(), started=start_time(os.getpid()) or 0,
                    log=str(state_dir / "control.log"))
    ClusterRecord(state_dir=state_dir, nodes=2, procs={"control": me}).save()
    (state_dir / "kubeconfig").write_text("apiVersion: v1\nkind: Config\n")


def test_lab_run_of_an_unknown_lab_lists_the_real_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "run", "99"]) == 1
    err = capsys.readouterr().err
    assert "no lab '99'; the labs are:" in err
    assert "01  pods-and-namespaces" in err and "17  configmaps-secrets" in err


def test_lab_list_shows_every_lab(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "list"]) == 0
    out = capsys.readouterr().out
    assert "Session affinity and its timeout" in out and "07-session-affinity" in out


def test_lab_check_needs_a_lab_or_all(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "check"]) == 1
    assert "name one lab (e.g. 06) or pass --all" in capsys.readouterr().err


def test_a_lab_over_a_running_cluster_says_the_way_out(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    running_cluster(tmp_path / "state")
    assert main(["lab", "run", "06", "--state-dir", str(tmp_path / "state")]) == 1
    err = capsys.readouterr().err
    assert f"a cluster is already up in {tmp_path / 'state'}" in err
    assert f"'knet down --state-dir {tmp_path / 'state'}'" in err and "--reuse" in err
    assert main(["demo", "--state-dir", str(tmp_path / "state")]) == 1
    assert "then run the demo again" in capsys.readouterr().err


def test_set_must_be_key_value(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "check", "07", "--set", "affinity"]) == 1
    assert "--set 'affinity': expected KEY=VALUE" in capsys.readouterr().err


@pytest.fixture()
def fake_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    fake = tmp_path / "kubectl"
    fake.write_text('#!/bin/sh\necho "kubectl $*"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("KNET_KUBECTL", str(fake))
    return fake


def test_everyday_commands_run_kubectl_with_the_cluster(tmp_path: Path, fake_kubectl: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capfd: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    running_cluster(state)
    monkeypatch.setenv("KNET_STATE_DIR", str(state))
    assert main(["get", "pods", "-o", "wide", "--all-namespaces"]) == 0
    assert capfd.readouterr().out.strip() == (
        f"kubectl --kubeconfig {state}/kubeconfig --cache-dir {state}/kubectl-cache "
        "get pods -o wide --all-namespaces")
    assert main(["exec", "client", "--", "ls", "-l"]) == 0
    assert capfd.readouterr().out.strip().endswith("exec client -- ls -l")


def test_everyday_commands_without_a_cluster_or_kubectl(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KNET_STATE_DIR", str(tmp_path / "none"))
    monkeypatch.delenv("KNET_KUBECTL", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no kubectl anywhere
    assert main(["get", "pods"]) == 1
    assert "kubectl is not installed: install it with" in capsys.readouterr().err
    fake = tmp_path / "kubectl"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert main(["get", "pods"]) == 1
    assert f"no cluster is running in {tmp_path / 'none'}; start one with 'knet up'" in \
        capsys.readouterr().err
