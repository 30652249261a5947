"""The runtime's records: atomic key=value files, pid + start time liveness, pruning of old
instances (Kubernetes keeps the current and the previous one)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from knet.runtime import layout, records


def test_record_roundtrip_is_atomic_and_one_line_per_field(tmp_path: Path) -> None:
    p = tmp_path / "0.exit"
    records.write_record(p, {"code": "1", "message": "two\nlines"})
    assert records.read_record(p) == {"code": "1", "message": "two lines"}
    assert sorted(os.listdir(tmp_path)) == ["0.exit"]  # no temp file left
    assert records.read_record(tmp_path / "missing") is None


def test_alive_needs_the_same_start_time_and_no_zombie() -> None:
    st = records.proc_stat(os.getpid())
    assert st is not None
    assert records.alive(os.getpid(), st[1])
    assert not records.alive(os.getpid(), st[1] + 1)  # a reused pid starts at another time
    child = subprocess.Popen(["true"])
    for _ in range(500):
        zst = records.proc_stat(child.pid)
        if zst is not None and zst[0] == "Z":
            break
        time.sleep(0.01)
    zst = records.proc_stat(child.pid)
    assert zst is not None and not records.alive(child.pid, zst[1])  # exited, not yet reaped
    child.wait()
    assert records.proc_stat(child.pid) is None
    assert not records.alive(0, 0)


def test_prune_keeps_the_current_and_previous_instance(tmp_path: Path) -> None:
    for n in range(4):
        for p in layout.instance(tmp_path, "app", n)[1:]:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("x")
    layout.prune(tmp_path, "app", keep_from=2)
    assert layout.attempts(tmp_path, "app") == [2, 3]
    assert sorted(os.listdir(layout.container_dir(tmp_path, "app")))[:4] == [
        "2.exit", "2.log", "2.spec", "2.state"]
    assert layout.container_names(tmp_path) == ["app"]
    inst = layout.instance_of_log(tmp_path / "containers" / "app" / "3.log")
    assert inst.attempt == 3 and inst.spec.name == "3.spec"
