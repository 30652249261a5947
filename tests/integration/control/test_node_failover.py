"""Node failure end to end: `knet control` (node grace 4 s, eviction grace 2 s through the
environment) with two simulated nodes; node-1's kubelet stops renewing its Lease; kubectl
then shows node-1 Ready=Unknown (NotReady) and tainted, and the Deployment's pods that were on node-1 are
evicted and replaced on node-2."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import yaml
from simnodes import SimNodes, start_control

KUBECTL = "/usr/bin/kubectl"


def kubectl(kubeconfig: Path, cache: Path, *args: str, input: str | None = None) -> str:
    out = subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache),
                          *args], input=input, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"kubectl {' '.join(args)}: {out.stderr}"
    return out.stdout


def until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out: {what}; last {got!r}"
        time.sleep(0.5)


def test_unreachable_node_is_tainted_and_its_pods_move(tmp_path: Path) -> None:
    env = {"KNET_NODE_MONITOR_GRACE": "4", "KNET_POD_EVICTION_GRACE": "2"}
    cache = tmp_path / "cache"
    with start_control(tmp_path, env=env) as kc, SimNodes(kc, renew_every=0.5) as nodes:
        k = lambda *a, **kw: kubectl(kc, cache, *a, **kw)
        k("apply", "-f", "-", input=yaml.safe_dump({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}))
        k("rollout", "status", "deployment/web", "--timeout=60s")

        def pods() -> list[dict]:
            return json.loads(k("get", "pods", "-l", "app=web", "-o", "json"))["items"]
        on_1 = {p["metadata"]["name"] for p in pods() if p["spec"]["nodeName"] == "node-1"}
        assert len(on_1) == 2
        nodes.stop_renewing("node-1")

        def not_ready() -> dict | None:
            node = json.loads(k("get", "node", "node-1", "-o", "json"))
            ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"][0]
            return node if ready["status"] == "Unknown" and node["spec"].get("taints") else None
        until(not_ready, 30, "node-1 Ready=Unknown and tainted")
        node = json.loads(k("get", "node", "node-1", "-o", "json"))
        assert {t["key"] for t in node["spec"]["taints"]} == {"node.kubernetes.io/unreachable"}

        def moved() -> list[dict] | None:
            items = pods()
            live = [p for p in items if p["status"].get("phase") == "Running"]
            ok = (len(items) == 4 and len(live) == 4
                  and all(p["spec"]["nodeName"] == "node-2" for p in items)
                  and not {p["metadata"]["name"] for p in items} & on_1)
            return items if ok else None
        until(moved, 40, "pods evicted from node-1 and running on node-2")
        events = k("get", "events", "-A")
        assert "TaintManagerEviction" in events and "NodeNotReady" in events
