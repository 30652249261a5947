"""A real cluster for end-to-end tests: `knet up --nodes 2` in a temporary state dir (inside
the test sandbox), driven with the real kubectl, and `knet down` at the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("cluster")
    c = Cluster(base / "state", base / "kubecache")
    before = host_state(c.state_dir)
    c.knet("up", "--nodes", "2", "--state-dir", str(c.state_dir), "--timeout", "90",
           env={"KNET_NODE_MONITOR_GRACE": "10", "KNET_POD_EVICTION_GRACE": "1"})
    try:
        yield c
    finally:
        c.knet("down", "--state-dir", str(c.state_dir), check=False)
        assert host_state(c.state_dir) == before, "knet down left something behind"
        assert not c.state_dir.exists()
