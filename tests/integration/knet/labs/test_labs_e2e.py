"""The labs for real: `knet lab check --all` passes on its own cluster (one cluster for all,
each lab in its own namespace), and the checks of several labs FAIL when the behaviour they
teach is switched off with --set (affinity off, a pod never relabelled, no L7, ...), each at
the step that checks that behaviour."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from knet.labs.session import catalog

LAB_ENV = {"KNET_NODE_MONITOR_GRACE": "8", "KNET_POD_EVICTION_GRACE": "2"}


def knet(*args: str, timeout: float = 900,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "knet.cli.main", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})},
                          check=False)


def test_check_all_passes_and_cleans_up(tmp_path: Path) -> None:
    state = tmp_path / "state"
    r = knet("lab", "check", "--all", "--state-dir", str(state))
    assert r.returncode == 0, r.stdout + r.stderr
    total = len(catalog())
    for n in range(1, total + 1):
        assert f"lab {n:02d} passed" in r.stdout, r.stdout
    assert f"{total}/{total} lab(s) passed" in r.stdout
    assert "skipped" not in r.stdout  # flows, capture, trace and topo exist: nothing skipped
    assert not (state / "cluster.json").exists()


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    d = tmp_path_factory.mktemp("labs") / "state"
    r = knet("up", "--nodes", "2", "--state-dir", str(d), env=LAB_ENV, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        yield d
    finally:
        knet("down", "--state-dir", str(d))


# lab, overrides that switch the taught behaviour off, the failing check's message
# (" ... " separates parts that must all appear)
BROKEN = [
    ("03", ["client_node=node-2"], "output contains ' via ', it should not"),
    ("05", ["relabel_to=backend"], "step 11 (wait for get=endpointslices"),  # never 1 endpoint
    ("06", ["affinity=ClientIP"], "expected 3 value(s) seen 10 time(s) each"),
    ("07", ["affinity=None", "affinity_config="], "expected 1 value(s) seen 20 time(s) each"),
    ("08", ["headless=web"], "1 value(s), expected 2"),
    ("10", ["max_unavailable=3", "lifecycle={}"], "step 15 (join load): ... distinct value(s) ... 200: "),
    ("12", ["type=ClusterIP"], "output does not match /^3[0-2]\\d{3}$/"),
    ("16", ["app_protocol=tcp"], "0 value(s), expected 12"),
    ("17", ["message=goodbye"], "output does not contain 'hello from a ConfigMap'"),
    ("19", ["dataplane=none"], "step 11 (client: ... does not match /^\\s*(1[6-9]\\d) v1$/"),
    ("20", ["retry_attempts=0"], "step 10 (client: ... does not match /^\\s*30 200$/"),
    ("21", ["mode=NonIndexed"], "output does not match /^0-3$/"),
    ("22", ["os=windows"], "step 3 (wait for pods=name=node-agent"),   # no eligible node
    ("23", ["policy=Parallel"], "step 8 (join watch): ... does not match"),  # web-1 too early
    ("24", ["load=sleep 600"], "step 14 (wait for get=hpa php-apache"),  # no load, no scale-up
    ("25", ["log_node=node-2"], "step 7 ... CNI_IFNAME"),    # the pod's ADD is in node-1's log
    ("26", ["mode=PERMISSIVE"], "step 15 (legacy: ... does not contain '000'"),  # not refused
    ("27", ["action=AUDIT"], "step 9 (other: ... does not contain 'RBAC: access denied 403'"),
    ("28", ["dataplane=none"], "step 8 (host: knet mesh stat -n ... does not match"),
    ("29", ["class=istio"], "step 10 (wait for get=gateway store"),   # no controller
    ("31", ["type=NodePort"], "step 5 (wait for get=service web"),     # never an address
    ("33", ["policy=Cluster"], "step 16 (host: ... 2 value(s), expected 1"),  # SNAT, both answer
    ("34", ["policy=Cluster"], "output does not contain 'RemoteAddr: 172.18.0.1:'"),  # masqueraded
]


@pytest.mark.parametrize(("lab", "sets", "why"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_lab_fails_when_its_behaviour_is_broken(state: Path, lab: str, sets: list[str],
                                                  why: str) -> None:
    args = [a for s in sets for a in ("--set", s)]
    r = knet("lab", "check", lab, "--reuse", "--state-dir", str(state), *args)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"lab {lab} FAILED" in r.stdout, r.stdout + r.stderr
    assert all(part in r.stdout for part in why.split(" ... ")), r.stdout  # at the right check


def test_a_lab_refuses_to_start_over_a_running_cluster(state: Path) -> None:
    r = knet("lab", "run", "01", "--state-dir", str(state))
    assert r.returncode == 1
    assert f"a cluster is already up in {state}" in r.stderr and "--reuse" in r.stderr
