"""`knet status`: what the record says runs and what really does. Each recorded component
(control plane, agents, kube-proxies) is checked by pid + start time; a dead one is named with
the way out (`knet up` restarts it). Nodes and pods come from the API when it answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from control.client import HttpClient
from control.errors import ApiError
from knet.cluster import components
from knet.cluster.state import ClusterRecord


def node_ready(node: dict[str, Any]) -> bool:
    for c in node.get("status", {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False


async def status(state_dir: Path) -> dict[str, Any]:
    """up (the control plane runs), healthy (every expected component runs), processes,
    dead (role -> what it is), nodes and their readiness, pods per node."""
    rec = ClusterRecord.load(state_dir)
    if rec is None:
        return {"up": False, "healthy": False, "state_dir": str(state_dir)}
    processes: dict[str, dict[str, Any]] = {}
    for role in components.expected_roles(rec) + sorted(
            set(rec.procs) - set(components.expected_roles(rec))):
        p = rec.procs.get(role)
        processes[role] = {"pid": p.pid if p else None, "alive": bool(p and p.alive()),
                           "what": components.describe(role), "log": p.log if p else ""}
    dead = {r: p["what"] for r, p in processes.items() if not p["alive"]}
    out: dict[str, Any] = {
        "up": processes["control"]["alive"], "healthy": not dead and bool(rec.procs),
        "state_dir": str(state_dir), "server": rec.server, "kubeconfig": str(rec.kubeconfig),
        "processes": processes, "dead": dead, "backend": rec.options.backend, "cni": rec.options.cni,
    }
    if out["up"] and rec.kubeconfig.exists():
        client = HttpClient.from_kubeconfig(rec.kubeconfig)
        try:
            nodes = (await client.list("nodes")).items
            pods = (await client.list("pods")).items
            out["nodes"] = {
                n["metadata"]["name"]: {
                    "ready": node_ready(n),
                    "pods": sum(1 for p in pods if p.get("spec", {}).get("nodeName")
                                == n["metadata"]["name"])}
                for n in nodes}
        except (ApiError, OSError) as exc:
            out["api_error"] = str(exc)
        finally:
            await client.close()
    return out
