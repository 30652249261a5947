"""`knet demo` end to end in the sandbox, as the README's first command: every stage checked,
the cluster gone afterwards (or kept with --keep); and Ctrl-C during a lab takes its cluster
down."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path


def knet(*args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "knet.cli.main", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


def netns() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                          check=False).stdout


def test_demo_shows_each_stage_and_leaves_nothing(tmp_path: Path) -> None:
    before = netns()
    r = knet("demo", "--state-dir", str(tmp_path / "state"))
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    for stage in ("deploy: backend", "DNS: the frontend resolves backend-service",
                  "round-robin: 30 requests", "session affinity", "trace: one request",
                  "where next", "knet demo: done"):
        assert stage in out, out
    assert "each backend pod answered exactly 10 of the 30 requests" in out
    assert "all 20 requests pinned to backend-" in out
    assert "answered by backend-" in out and "proxy node-" in out
    assert "SKIPPED" not in out
    assert netns() == before
    assert not (tmp_path / "state").exists()


def test_demo_keep_leaves_the_cluster_for_kubectl(tmp_path: Path) -> None:
    state = tmp_path / "state"
    r = knet("demo", "--keep", "--state-dir", str(state))
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        assert "cluster kept: export KUBECONFIG=" in r.stdout
        pods = subprocess.run(["kubectl", "--kubeconfig", str(state / "kubeconfig"),
                               "--cache-dir", str(tmp_path / "kc"), "get", "pods", "-o", "name"],
                              capture_output=True, text=True, timeout=60, check=False)
        assert "pod/frontend" in pods.stdout and pods.stdout.count("pod/backend-") == 3
    finally:
        knet("down", "--state-dir", str(state))


def test_ctrl_c_during_a_lab_takes_its_cluster_down(tmp_path: Path) -> None:
    before = netns()
    state = tmp_path / "state"
    proc = subprocess.Popen([sys.executable, "-m", "knet.cli.main", "lab", "run", "06",
                             "--state-dir", str(state)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 180
    for line in proc.stdout:  # wait until the lab is under way: the cluster is up
        seen.append(line)
        if re.match(r"\[\d+\] apply", line) or time.monotonic() > deadline:
            break
    assert (state / "cluster.json").exists(), "".join(seen)
    os.kill(proc.pid, signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "taking the cluster down (knet down)" in rest
    assert not (state / "cluster.json").exists()
    assert netns() == before
