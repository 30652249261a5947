"""The cluster record without root: what `down` removes from a state dir (exactly what was not
there before `up`), which components `status` calls dead (and its exit code), and adopting a
process knet did not start."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from knet.cli.commands import cluster as cluster_cmd
from knet.cluster import components, procs
from knet.cluster.lifecycle import _remove_files
from knet.cluster.procs import ProcRecord
from knet.cluster.state import ClusterRecord, proxy_role, proxy_socket
from knet.cluster.status import status


def _live(role: str) -> ProcRecord:
    started = procs.start_time(os.getpid())
    assert started is not None
    return ProcRecord(role=role, pid=os.getpid(), started=started, log="")


def _dead(role: str) -> ProcRecord:
    return ProcRecord(role=role, pid=os.getpid(), started=1, log=f"/x/{role}.log")


def _tree(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


def _made_by_a_cluster(d: Path) -> None:
    """What `knet control`, agents, proxies and labs leave in a state dir."""
    for name in ("token", "tls.key", "tls.crt", "state.db", "state.db.lock", "kubeconfig",
                 "control.pid", "kubectl-cache"):
        if not (d / name).exists():   # the control plane reuses a token it finds
            (d / name).write_text("x")
    for sub in ("logs", "pods/node-1", "dataplane/nodes", "proxy", "tokens"):
        (d / sub).mkdir(parents=True)
    (d / "logs" / "control.log").write_text("x")
    (d / "proxy" / "node-1.sock").write_text("")


def test_down_removes_exactly_what_was_not_there_before_up(tmp_path: Path) -> None:
    d = tmp_path / "state"
    d.mkdir()
    (d / "notes.txt").write_text("mine")
    (d / "token").write_text("a token the user had there")   # pre-existing: kept
    (d / "mine").mkdir()
    before = _tree(d)
    rec = ClusterRecord(state_dir=d, nodes=1, found=sorted(os.listdir(d)))
    rec.save()
    _made_by_a_cluster(d)
    said: list[str] = []
    _remove_files(rec, keep_logs=False, say=said.append)
    assert _tree(d) == before
    assert (d / "token").read_text() == "a token the user had there"
    assert any("tls.key" in s and "state.db.lock" in s and "kubectl-cache" in s for s in said)
    assert any(s.startswith(f"kept what {d} held before") and "notes.txt" in s for s in said)


def test_failed_up_keeps_logs_and_the_record_for_a_later_down(tmp_path: Path) -> None:
    d = tmp_path / "state"
    d.mkdir()
    rec = ClusterRecord(state_dir=d, nodes=1, found=[], procs={"control": _dead("control")})
    rec.save()
    _made_by_a_cluster(d)
    _remove_files(rec, keep_logs=True, say=lambda _m: None)
    assert sorted(os.listdir(d)) == ["cluster.json", "logs"]
    again = ClusterRecord.load(d)
    assert again is not None and again.procs == {} and again.found == []
    _remove_files(again, keep_logs=False, say=lambda _m: None)
    assert os.listdir(d) == []


def test_a_state_dir_made_by_up_is_removed_whole(tmp_path: Path) -> None:
    d = tmp_path / "state"
    d.mkdir()
    rec = ClusterRecord(state_dir=d, nodes=1, found=[], made_dirs=[str(d)])
    rec.save()
    _made_by_a_cluster(d)
    _remove_files(rec, keep_logs=False, say=lambda _m: None)
    assert not d.exists()


def test_a_record_without_found_removes_only_knets_own_names(tmp_path: Path) -> None:
    d = tmp_path / "state"
    d.mkdir()
    (d / "notes.txt").write_text("mine")
    ClusterRecord(state_dir=d, nodes=1).save()
    raw = (d / "cluster.json").read_text().replace('"found": null', '"found": null')
    (d / "cluster.json").write_text(raw)
    rec = ClusterRecord.load(d)
    assert rec is not None and rec.found is None
    _made_by_a_cluster(d)
    _remove_files(rec, keep_logs=False, say=lambda _m: None)
    assert "notes.txt" in os.listdir(d) and "tls.key" not in os.listdir(d)


def test_record_round_trip_is_private(tmp_path: Path) -> None:
    rec = ClusterRecord(state_dir=tmp_path, nodes=2, store="sqlite:///x", found=["a"],
                        procs={"control": _live("control")})
    rec.save()
    assert (tmp_path / "cluster.json").stat().st_mode & 0o777 == 0o600
    again = ClusterRecord.load(tmp_path)
    assert again is not None and again.found == ["a"] and again.procs == rec.procs
    assert again.node_names() == ["node-1", "node-2"]
    assert proxy_socket(tmp_path, "node-2") == tmp_path / "proxy" / "node-2.sock"
    assert components.expected_roles(again) == [
        "control", "node-1", "kube-proxy-node-1", "node-2", "kube-proxy-node-2"]


def _status_args(d: Path) -> argparse.Namespace:
    return argparse.Namespace(state_dir=d, output="text")


def test_status_names_each_dead_component_and_exits_non_zero(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rec = ClusterRecord(state_dir=tmp_path, nodes=2, found=[], procs={
        "control": _dead("control"), "node-1": _live("node-1"),
        proxy_role("node-1"): _live(proxy_role("node-1")), "node-2": _dead("node-2")})
    rec.save()
    st = asyncio.run(status(tmp_path))
    assert st["up"] is False and st["healthy"] is False
    assert set(st["dead"]) == {"control", "node-2", "kube-proxy-node-2"}
    assert cluster_cmd._status(_status_args(tmp_path)) == 1
    out = capsys.readouterr().out
    for role in ("control", "node-2", "kube-proxy-node-2"):
        assert f"DEAD: {role}:" in out
    assert "DEAD: node-1" not in out
    assert f"'knet up --state-dir {tmp_path}' to restart it" in out
    assert "kube-proxy of node-2 (knet proxy) is not running" in out


def test_status_of_no_cluster_exits_non_zero(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert cluster_cmd._status(_status_args(tmp_path)) == 1
    assert "no cluster" in capsys.readouterr().out


def test_adopt_checks_the_command_line(tmp_path: Path) -> None:
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "control"])
    try:
        deadline = time.monotonic() + 5
        # until the child has exec'd (before that its command line is pytest's)
        while b"control" not in Path(f"/proc/{p.pid}/cmdline").read_bytes() and \
                time.monotonic() < deadline:
            time.sleep(0.01)
        got = procs.adopt("control", p.pid, log=tmp_path / "c.log", argv_has=("control",))
        assert got is not None and got.alive() and got.pid == p.pid
        assert procs.adopt("control", p.pid, log=tmp_path / "c.log", argv_has=("agent",)) is None
        (tmp_path / "control.pid").write_text(f"{p.pid}\n")
        rec = ClusterRecord(state_dir=tmp_path, nodes=1, found=[])
        assert components.adopt_control(rec) and rec.procs["control"].pid == p.pid
        assert ClusterRecord.load(tmp_path).procs["control"].pid == p.pid  # type: ignore[union-attr]
    finally:
        p.kill()
        p.wait()
    assert procs.adopt("control", p.pid, log=tmp_path / "c.log", argv_has=("control",)) is None


def test_added_and_removed_nodes_are_recorded_with_their_index(tmp_path: Path) -> None:
    rec = ClusterRecord(state_dir=tmp_path, nodes=2, store="sqlite:///x")
    assert rec.node_indexes() == {"node-1": 1, "node-2": 2}
    rec.set_nodes({**rec.node_indexes(), "n3": 3})
    rec.save()
    again = ClusterRecord.load(tmp_path)
    assert again is not None and again.nodes == 3
    assert again.node_names() == ["node-1", "node-2", "n3"] and again.node_index("n3") == 3
    assert components.expected_roles(again)[-2:] == ["n3", "kube-proxy-n3"]
    again.set_nodes({n: i for n, i in again.node_indexes().items() if n != "node-1"})
    again.save()
    last = ClusterRecord.load(tmp_path)
    assert last is not None and last.node_names() == ["node-2", "n3"]
    assert last.node_index("node-2") == 2


def test_cluster_options_round_trip_only_what_differs(tmp_path: Path) -> None:
    from knet.cluster.state import ClusterOptions

    opts = ClusterOptions.asked({"backend": "vxlan", "proxy_mode": None,
                                 "preserve_source_ip": False})
    assert (opts.backend, opts.proxy_mode, opts.preserve_source_ip) == ("vxlan", "userspace", False)
    assert opts.to_json() == {"backend": "vxlan", "preserve_source_ip": False}
    rec = ClusterRecord(state_dir=tmp_path, nodes=2, options=opts)
    rec.save()
    loaded = ClusterRecord.load(tmp_path)
    assert loaded is not None and loaded.options == opts
    assert ClusterOptions.from_json({"nodes": 2, "cni": "reference"}) == ClusterOptions(cni="reference")


def test_a_recorded_cluster_refuses_other_options_naming_the_flag(tmp_path: Path) -> None:
    from knet.cluster.state import ClusterOptions

    opts = ClusterOptions(proxy_mode="nftables")
    opts.refuse_change({"proxy_mode": "nftables", "backend": None}, tmp_path)  # same: fine
    with pytest.raises(ValueError) as e:
        opts.refuse_change({"proxy_mode": "userspace"}, tmp_path)
    assert str(e.value) == (f"the cluster in {tmp_path} runs with --proxy-mode nftables; "
                            "--proxy-mode userspace needs a new one: run 'knet down' first")
    with pytest.raises(ValueError, match="runs with source IPs preserved; "
                                         "--no-preserve-source-ip needs a new one"):
        opts.refuse_change({"preserve_source_ip": False}, tmp_path)
