"""`python -m bench cluster`: a Deployment of N replicas on a 2-node cluster, from
`kubectl apply` until every pod is Ready, and from `kubectl delete` until every pod is gone;
agent memory (RSS) at each size.

Anchor, in the same run: the same N pods made directly with the dataplane and the runtime
(netns + veth + IP, then the whoami process), with no API server, scheduler, controllers,
kubelet or status writes. The ratio is what the cluster machinery costs on top of the raw
work. Runs itself inside `knet sandbox`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import table

NAME = "cluster"
DESCRIPTION = ("Deployment of N replicas on 2 nodes: apply->all Ready and delete->all gone "
               "(s), agent RSS; anchor: the same pods made directly (dataplane + runtime)")

MANIFEST = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: bench}}
spec:
  replicas: {n}
  selector: {{matchLabels: {{app: bench}}}}
  template:
    metadata: {{labels: {{app: bench}}}}
    spec:
      terminationGracePeriodSeconds: 5
      containers: [{{name: whoami, image: knet/whoami}}]
"""


def _knet(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "knet.cli.main", *args], check=True,
                   stdout=subprocess.DEVNULL)


def _kubectl(kubeconfig: Path, cache: Path, *args: str, input: str | None = None) -> str:
    return subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache),
                           *args], check=True, capture_output=True, text=True,
                          input=input).stdout


def _count_ready(kubeconfig: Path, cache: Path) -> tuple[int, int]:
    items = json.loads(_kubectl(kubeconfig, cache, "get", "pods", "-l", "app=bench", "-o",
                                "json"))["items"]
    ready = sum(1 for p in items if any(c["type"] == "Ready" and c["status"] == "True"
                                        for c in p.get("status", {}).get("conditions") or []))
    return len(items), ready


def _rss_mb(pids: list[int]) -> list[float]:
    out = []
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out.append(int(line.split()[1]) / 1024)
    return out


def _cluster_run(sizes: list[int], state: Path) -> list[list[object]]:
    _knet("up", "--nodes", "2", "--state-dir", str(state))
    kc, cache = state / "kubeconfig", state / "kubecache"
    rec = json.loads((state / "cluster.json").read_text())
    agents = [p["pid"] for r, p in rec["procs"].items() if r.startswith("node-")]
    rows: list[list[object]] = []
    try:
        for n in sizes:
            t0 = time.monotonic()
            _kubectl(kc, cache, "apply", "-f", "-", input=MANIFEST.format(n=n))
            while _count_ready(kc, cache) != (n, n):
                time.sleep(0.2)
            ready_s = time.monotonic() - t0
            rss = _rss_mb(agents)
            t0 = time.monotonic()
            _kubectl(kc, cache, "delete", "deployment", "bench", "--wait=false")
            while _count_ready(kc, cache)[0]:
                time.sleep(0.2)
            gone_s = time.monotonic() - t0
            rows.append([n, "knet cluster", ready_s, gone_s, max(rss), sum(rss)])
    finally:
        _knet("down", "--state-dir", str(state))
    return rows


async def _raw(n: int, state: Path) -> tuple[float, float]:
    from knet.dataplane.base import NodeSpec
    from knet.dataplane.netlink import NetlinkDataplane
    from knet.runtime.base import ContainerSpec, PodSandbox
    from knet.runtime.images import resolve
    from knet.runtime.process import ProcessRuntime

    dp, rt = NetlinkDataplane(state / "dataplane"), ProcessRuntime()
    await dp.ensure_host()
    specs = [NodeSpec.default(1), NodeSpec.default(2)]
    for s in specs:
        await dp.ensure_node(s)
    argv = resolve("knet/whoami", None, None)
    sandboxes: list[PodSandbox] = []

    async def one(i: int) -> None:
        node = specs[i % 2].name
        net = await dp.ensure_pod(node, f"default/raw-{i}")
        sb = PodSandbox.for_pod("default", f"raw-{i}", netns=net.netns, pod_ip=net.ip,
                                pod_dir=state / "pods" / f"raw-{i}")
        sandboxes.append(sb)
        await rt.start(sb, ContainerSpec(name="whoami", argv=argv))

    t0 = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(n)))
    made = time.monotonic() - t0
    t0 = time.monotonic()
    await asyncio.gather(*(rt.remove(sb) for sb in sandboxes))
    for i in range(n):
        await dp.delete_pod(specs[i % 2].name, f"default/raw-{i}")
    removed = time.monotonic() - t0
    await dp.cleanup()
    await rt.close()
    await dp.close()
    return made, removed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench cluster", description=DESCRIPTION)
    parser.add_argument("--sizes", default="10,100,300", help="comma-separated replica counts")
    args = parser.parse_args(argv)
    if os.environ.get("KNET_SANDBOX") != "1":
        cmd = [sys.executable, "-m", "knet.cli.main", "sandbox", "--", sys.executable, "-m",
               "bench", NAME, *argv]
        return subprocess.run(cmd, check=False).returncode
    import uvloop

    sizes = [int(s) for s in args.sizes.split(",")]
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory(prefix="knet-bench-") as tmp:
        for n in sizes:
            made, removed = uvloop.run(_raw(n, Path(tmp) / f"raw{n}"))
            rows.append([n, "direct (anchor)", made, removed, None, None])
        cluster_rows = _cluster_run(sizes, Path(tmp) / "cluster")
    merged = []
    for n in sizes:
        merged += [r for r in rows if r[0] == n] + [r for r in cluster_rows if r[0] == n]
    print(f"Deployment of N pods on 2 nodes ({os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.1f})")
    print(table(["pods", "how", "to Ready s", "to gone s", "agent RSS max MB",
                 "agents RSS sum MB"], merged, value_col=2, group_col=0,  # type: ignore[arg-type]
                ratio_title="Ready vs direct"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
