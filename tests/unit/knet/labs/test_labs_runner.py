"""The lab runner's own logic, with host-only steps and a recording stand-in for kubectl
(a script on KNET_KUBECTL that logs its arguments): order, variables, failure reports,
SKIPPED steps, background runs, retries, and cleanup that always runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from knet.errors import KnetError
from knet.labs.kube import Kube
from knet.labs.model import Lab
from knet.labs.runner import LabEvent, LabRun


@pytest.fixture()
def kube(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Kube:
    log = tmp_path / "kubectl.log"
    fake = tmp_path / "kubectl"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    fake.chmod(0o755)
    monkeypatch.setenv("KNET_KUBECTL", str(fake))
    return Kube(tmp_path / "kubeconfig", tmp_path / "cache")


def run(lab: dict, kube: Kube, tmp_path: Path, **kw) -> tuple:  # type: ignore[no-untyped-def]
    events: list[LabEvent] = []
    res = LabRun(Lab.model_validate(lab), tmp_path, kube, namespace="lab-x",
                 report=events.append, **kw).run()
    return res, events


def kubectl_calls(tmp_path: Path) -> list[str]:
    return (tmp_path / "kubectl.log").read_text().splitlines()


def test_steps_run_in_order_with_variables_saves_and_sets(kube: Kube, tmp_path: Path) -> None:
    lab = {"title": "t", "vars": {"who": "world"}, "steps": [
        {"say": "hello ${who}"},
        {"run": {"host": "echo 42"}, "save": "answer"},
        {"set": {"who": "${answer}-x"}},
        {"run": {"host": "echo $NS ${who} ${ns}"}, "expect": {"regex": "^lab-x 42-x lab-x$"}},
    ]}
    res, events = run(lab, kube, tmp_path)
    assert res.ok, res.message
    assert events[0] == LabEvent("say", "hello world", 1)
    calls = kubectl_calls(tmp_path)
    assert any("create namespace lab-x" in c for c in calls)
    assert "delete namespace lab-x" in calls[-1]  # cleanup at the end


def test_a_failing_expectation_stops_the_lab_naming_step_and_output(kube: Kube,
                                                                     tmp_path: Path) -> None:
    lab = {"title": "t", "steps": [
        {"run": {"host": "printf 'Hostname: a\\nHostname: a\\n'"},
         "expect": {"extract": "Hostname: (\\S+)", "distinct": 2}},
        {"run": {"host": "touch reached"}},
    ], "cleanup": [{"run": {"host": "touch cleaned"}}]}
    res, events = run(lab, kube, tmp_path)
    assert not res.ok
    assert res.message.startswith("step 1 (host: printf")
    assert "1 distinct value(s) (a: 2), expected 2" in res.message
    assert "Hostname: a" in res.message  # the output is shown
    assert not (tmp_path / "reached").exists()
    assert (tmp_path / "cleaned").exists()
    assert [e.kind for e in events].count("fail") == 1


def test_overrides_change_variables_and_unknown_ones_are_refused(kube: Kube,
                                                                  tmp_path: Path) -> None:
    lab = {"title": "t", "vars": {"mode": "on"}, "steps": [
        {"run": {"host": "echo ${mode}"}, "expect": {"contains": "on"}}]}
    assert run(lab, kube, tmp_path)[0].ok
    assert not run(lab, kube, tmp_path, overrides={"mode": "off"})[0].ok
    with pytest.raises(KnetError, match="no variable nope; it has: mode"):
        run(lab, kube, tmp_path, overrides={"nope": "1"})


def test_a_step_needing_a_missing_command_is_skipped_not_passed(kube: Kube,
                                                                 tmp_path: Path) -> None:
    lab = {"title": "t", "steps": [
        {"run": {"host": "false"}, "needs": "no-such-command"},
        {"run": {"host": "true"}, "needs": "lab"}]}  # `knet lab` exists: it runs
    res, events = run(lab, kube, tmp_path)
    assert res.ok
    assert res.skipped == [("step 1: needs 'knet no-such-command', which this knet does not "
                            "have yet")]
    assert [e.kind for e in events].count("skip") == 1


def test_background_then_join_checks_its_output(kube: Kube, tmp_path: Path) -> None:
    lab = {"title": "t", "steps": [
        {"background": {"host": "sleep 0.3; echo late"}, "name": "bg"},
        {"run": {"host": "echo early"}},
        {"join": "bg", "expect": {"contains": "late"}}]}
    assert run(lab, kube, tmp_path)[0].ok
    lab["steps"][2]["expect"] = {"contains": "never"}
    assert not run(lab, kube, tmp_path)[0].ok


def test_until_retries_a_run_until_its_expectation_holds(kube: Kube, tmp_path: Path) -> None:
    lab = {"title": "t", "steps": [
        {"run": {"host": "echo x >> count; wc -l < count"}, "until": 10,
         "expect": {"regex": "^3$"}}]}
    assert run(lab, kube, tmp_path)[0].ok
    assert (tmp_path / "count").read_text().count("x") == 3


def test_kubectl_steps_carry_namespace_kubeconfig_and_cache(kube: Kube, tmp_path: Path) -> None:
    lab = {"title": "t", "steps": [{"run": {"kubectl": "get pods -o 'jsonpath={.a b}'"}}]}
    assert run(lab, kube, tmp_path)[0].ok
    call = next(c for c in kubectl_calls(tmp_path) if "get pods" in c)
    assert call == (f"--kubeconfig {tmp_path}/kubeconfig --cache-dir {tmp_path}/cache "
                    "--namespace lab-x get pods -o jsonpath={.a b}")


def test_steps_of_the_other_proxy_mode_are_left_out(kube: Kube, tmp_path: Path) -> None:
    from knet.cluster.state import ClusterOptions, ClusterRecord

    lab = {"title": "t", "steps": [
        {"run": {"host": "echo ${proxy_mode} > seen"}},
        {"run": {"host": "false"}, "mode": "nftables"},
        {"run": {"host": "touch userspace-only"}, "mode": "userspace"}]}
    res, _ = run(lab, kube, tmp_path)                    # no record: userspace
    assert res.ok and not res.skipped, res.message
    assert (tmp_path / "seen").read_text().strip() == "userspace"
    assert (tmp_path / "userspace-only").exists()
    (tmp_path / "userspace-only").unlink()
    ClusterRecord(state_dir=tmp_path, nodes=2, options=ClusterOptions(proxy_mode="nftables")).save()
    res, _ = run(lab, kube, tmp_path)                    # an nftables cluster: step 2 runs
    assert not res.ok and res.message.startswith("step 2 (host: false)"), res.message
    assert (tmp_path / "seen").read_text().strip() == "nftables"
    assert not (tmp_path / "userspace-only").exists()
