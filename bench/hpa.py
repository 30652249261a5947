"""`python -m bench hpa`: the HorizontalPodAutoscaler walkthrough on a real 2-node cluster with
knet's defaults (kubelets scraped every 15 s, HPA sync every 15 s): seconds from starting the
load generator to the first scale-up, and from stopping it to the Deployment back at one
replica (scale-down stabilization window set to `--down-window` through `behavior`).

Anchors, printed beside each measurement: the issue's goal for the way up (30 s: one scrape
period plus one sync period, the worst case of a pipeline that reacts within one period of
each), and for the way down the window plus the same two periods. Runs itself inside
`knet sandbox`. Measurements only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Cell, table

NAME = "hpa"
DESCRIPTION = ("HPA walkthrough on 2 nodes: load start -> first scale-up and load stop -> "
               "back to 1 (s), beside the scrape + sync (+ window) anchor")

PHP_APACHE = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: php-apache}
spec:
  selector: {matchLabels: {run: php-apache}}
  template:
    metadata: {labels: {run: php-apache}}
    spec:
      containers:
      - name: php-apache
        image: registry.k8s.io/hpa-example
        ports: [{containerPort: 80}]
        resources: {limits: {cpu: 500m}, requests: {cpu: 200m}}
---
apiVersion: v1
kind: Service
metadata: {name: php-apache, labels: {run: php-apache}}
spec:
  ports: [{port: 80}]
  selector: {run: php-apache}
"""
LOAD = "while sleep 0.01; do wget -q -O- http://php-apache; done"


class _Kube:
    def __init__(self, state: Path) -> None:
        self.base = ["kubectl", "--kubeconfig", str(state / "kubeconfig"), "--cache-dir",
                     str(state / "kubecache")]

    def __call__(self, *args: str, input: str | None = None) -> str:
        return subprocess.run([*self.base, *args], check=True, capture_output=True, text=True,
                              input=input).stdout

    def get(self, *args: str) -> Any:
        return json.loads(self("get", *args, "-o", "json"))


def _wait(what: str, cond: Any, timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return time.monotonic()
        time.sleep(0.5)
    raise TimeoutError(f"{what}: not within {timeout}s")


def _run(state: Path, window: int) -> list[list[Cell]]:
    env = {**os.environ}
    subprocess.run([sys.executable, "-m", "knet.cli.main", "up", "--nodes", "2",
                    "--state-dir", str(state)], check=True, stdout=subprocess.DEVNULL, env=env)
    k = _Kube(state)
    try:
        k("apply", "-f", "-", input=PHP_APACHE)
        k("wait", "--for=condition=available", "deployment/php-apache", "--timeout=120s")
        k("autoscale", "deployment", "php-apache", "--cpu-percent=50", "--min=1", "--max=10")
        k("patch", "hpa", "php-apache", "--type=merge", "-p", json.dumps(
            {"spec": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": window}}}}))

        def measured() -> bool:
            cur = k.get("hpa", "php-apache").get("status", {}).get("currentMetrics") or []
            return any((m.get("resource") or {}).get("current") for m in cur)
        _wait("a first measurement", measured, 120)

        def replicas() -> int:
            return int(k.get("deployment", "php-apache")["spec"]["replicas"])
        start = time.monotonic()
        k("run", "load-generator", "--image=busybox", "--restart=Never", "--", "/bin/sh",
          "-c", LOAD)
        up = _wait("a scale-up", lambda: replicas() > 1, 180) - start
        peak = replicas()
        time.sleep(20)
        peak = max(peak, replicas())
        stop = time.monotonic()
        k("delete", "pod", "load-generator", "--wait=false")
        down = _wait("back to 1", lambda: replicas() == 1, 300 + window) - stop
    finally:
        subprocess.run([sys.executable, "-m", "knet.cli.main", "down", "--state-dir",
                        str(state)], check=False, stdout=subprocess.DEVNULL)
    return [["load start -> first scale-up", "anchor: scrape 15 s + sync 15 s", 30.0],
            ["load start -> first scale-up", f"knet (reached {peak} replicas)", up],
            ["load stop -> back to 1", f"anchor: window {window} s + scrape + sync",
             window + 30.0],
            ["load stop -> back to 1", "knet", down]]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench hpa", description=DESCRIPTION)
    parser.add_argument("--down-window", type=int, default=30,
                        help="scale-down stabilization window through behavior (default 30 s)")
    args = parser.parse_args(argv)
    if os.environ.get("KNET_SANDBOX") != "1":
        cmd = [sys.executable, "-m", "knet.cli.main", "sandbox", "--", sys.executable, "-m",
               "bench", NAME, *argv]
        return subprocess.run(cmd, check=False).returncode
    with tempfile.TemporaryDirectory(prefix="knet-bench-") as tmp:
        rows = _run(Path(tmp) / "state", args.down_window)
    print(f"HPA walkthrough on 2 nodes ({os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.1f})")
    print(table(["phase", "what", "seconds"], rows, value_col=2, group_col=0,
                ratio_title="vs anchor"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
