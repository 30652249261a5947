"""The real-cluster kit of the end-to-end tests, shared by every test directory (importable
as `clusterkit`: tests/integration/conftest.py's directory is on sys.path): `Cluster` drives
a cluster with the real kubectl and `knet`, `cluster_up(base, *flags)` is `knet up --nodes 2
FLAGS` in a temporary state dir until the block ends, then `knet down` and the check that
nothing was left on the host (`host_state`). `cluster` is the module-scoped fixture of a
plain 2-node cluster (a directory's conftest imports it to offer it)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["FAST_NODE_FAILURE", "PROXY_MODES", "WEB_DEPLOYMENT", "Cluster", "client_pod",
           "cluster", "cluster_up", "host_state", "in_mode"]

PROXY_MODES = ["userspace", "nftables"]   # `knet up --proxy-mode`: in_mode runs a module in each
FAST_NODE_FAILURE = {"KNET_NODE_MONITOR_GRACE": "10", "KNET_POD_EVICTION_GRACE": "1"}

# A whoami Deployment with a readiness probe, and a client pod: used by several test files.
WEB_DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: whoami
        image: knet/whoami
        ports: [{containerPort: 80, name: http}]
        readinessProbe: {httpGet: {path: /health, port: http}, periodSeconds: 1}
"""


def client_pod(name: str = "client") -> str:
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  containers:
  - {{name: c, image: busybox, command: ["sleep", "3600"]}}
"""


class Cluster:
    def __init__(self, state_dir: Path, cache_dir: Path) -> None:
        self.state_dir = state_dir
        self.kubeconfig = state_dir / "kubeconfig"
        self.cache_dir = cache_dir
        self.mode = "userspace"      # the kube-proxy mode it was brought up in (in_mode)

    def knet(self, *args: str, check: bool = True, timeout: float = 180,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([sys.executable, "-m", "knet.cli.main", *args],
                           capture_output=True, text=True, timeout=timeout, check=False,
                           env={**os.environ, **(env or {})})
        if check and r.returncode != 0:
            raise AssertionError(f"knet {' '.join(args)} failed ({r.returncode}):\n"
                                 f"{r.stdout}\n{r.stderr}")
        return r

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), "--cache-dir",
                            str(self.cache_dir), *args], capture_output=True, text=True,
                           input=input, timeout=timeout, check=False)
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({r.returncode}):\n"
                                 f"{r.stdout}\n{r.stderr}")
        return r

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def wait(self, what: str, cond: Any, timeout: float = 60, every: float = 0.3) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = cond()
            except AssertionError as exc:
                last = exc
            else:
                if last:
                    return last
            time.sleep(every)
        raise AssertionError(f"timed out waiting for {what}; last: {last!r}")

    def ready_pods(self, selector: str, n: int, timeout: float = 60) -> list[dict[str, Any]]:
        def cond() -> list[dict[str, Any]] | None:
            items = self.get("pods", "-l", selector)["items"]
            live = [p for p in items if not p["metadata"].get("deletionTimestamp")]
            ready = [p for p in live if any(c["type"] == "Ready" and c["status"] == "True"
                                            for c in p.get("status", {}).get("conditions") or [])]
            return ready if len(ready) == n == len(live) else None
        return self.wait(f"{n} ready pods with {selector}", cond, timeout)

    def in_terminal(self, args: str, line: bytes, timeout: float = 60) -> str:
        """Run `kubectl ARGS` from a real terminal (util-linux `script` gives kubectl a pty);
        at the shell's prompt type `line`; everything kubectl printed."""
        kubectl = (f"kubectl --kubeconfig {self.kubeconfig} --cache-dir {self.cache_dir} "
                   + args)
        proc = subprocess.Popen(["script", "-qefc", kubectl, "/dev/null"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        assert proc.stdin is not None and proc.stdout is not None
        out = b""
        try:
            os.set_blocking(proc.stdout.fileno(), False)
            deadline = time.monotonic() + timeout
            sent = False
            while time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.3)
                out += proc.stdout.read() or b""
                if not sent and (b"#" in out or b"command prompt" in out):
                    time.sleep(1)
                    proc.stdin.write(line)
                    proc.stdin.flush()
                    sent = True
            proc.wait(timeout=30)
            out += proc.stdout.read() or b""
        finally:
            if proc.poll() is None:
                proc.kill()
        return out.decode(errors="replace").replace("\r", "")

    def exec(self, pod: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.kubectl("exec", pod, "--", *cmd, check=check)


def host_state(state_dir: Path) -> str:
    """Everything knet could leave behind on the host: namespaces, links, addresses, routes,
    netns mounts and mounts under the cluster's state dir."""
    out = []
    for cmd in (["ip", "netns", "list"], ["ip", "-o", "link"], ["ip", "-o", "addr"],
                ["ip", "route", "show", "table", "all"]):
        out.append(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    out.append("\n".join(sorted(
        line for line in Path("/proc/mounts").read_text().splitlines()
        if line.split()[2] == "nsfs" or "/run/netns" in line or str(state_dir) in line)))
    return "\n".join(out)


@contextlib.contextmanager
def cluster_up(base: Path, *flags: str, nodes: int = 2, timeout: float = 90,
               env: dict[str, str] | None = None, check_clean: bool = True) -> Iterator[Cluster]:
    """`knet up --nodes N FLAGS` with its state in base/state until the block ends; then
    `knet down`, and (check_clean) the host exactly as before."""
    c = Cluster(base / "state", base / "kubecache")
    before = host_state(c.state_dir)
    c.knet("up", "--nodes", str(nodes), *flags, "--state-dir", str(c.state_dir),
           "--timeout", f"{timeout:g}", env=env)
    try:
        yield c
    finally:
        c.knet("down", "--state-dir", str(c.state_dir), check=False)
        if check_clean:
            assert host_state(c.state_dir) == before, "knet down left something behind"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A 2-node cluster for one test module (node failure noticed in 10 s, as tests need)."""
    with cluster_up(tmp_path_factory.mktemp("cluster"), env=FAST_NODE_FAILURE) as c:
        yield c
    assert not c.state_dir.exists()


@contextlib.contextmanager
def in_mode(base: Path, mode: str, *flags: str) -> Iterator[Cluster]:
    """`cluster_up` with kube-proxy mode `mode` (one of PROXY_MODES) and `cluster.mode` set, for
    a module-scoped fixture with `params=PROXY_MODES`: every test of the module runs against
    a userspace cluster, then an nftables one (a test of one mode's own feature skips the
    other, saying why)."""
    mode_flags = ["--proxy-mode", mode] if mode != "userspace" else []
    with cluster_up(base, *mode_flags, *flags, env=FAST_NODE_FAILURE) as c:
        c.mode = mode
        yield c
