"""`knet up` / `knet down` / `knet status`: bring a cluster to life on this host, and remove
exactly what was made.

up: record first, then make: host network (dataplane), the control plane process, one agent
per node, wait until every node is Ready, then the system objects (kube-dns). Each process and
each directory is written into cluster.json as soon as it exists, so a failed or interrupted
`up` is undone by `down` like a finished one.
down: stop agents and the control plane (by recorded pid + start time), kill the containers
the runtime recorded, remove the dataplane's recorded kernel objects, then the files and
directories `up` made. Nothing is found by name pattern.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from control.client import HttpClient
from control.errors import ApiError
from knet.cluster import credentials, procs, system
from knet.cluster.state import ClusterRecord
from knet.errors import KnetError

if TYPE_CHECKING:
    from knet.dataplane.netlink import NetlinkDataplane

Say = Callable[[str], None]
HOST_IP = "172.18.0.1"
API_PORT = 6443


def _knet(*args: str) -> list[str]:
    return [sys.executable, "-m", "knet.cli.main", "-v", *args]


def _need_root(what: str) -> None:
    if os.geteuid() != 0:
        raise KnetError(f"knet {what} needs root (network namespaces): run it as root, "
                        "or in a privileged container")


def _dataplane(state_dir: Path) -> NetlinkDataplane:
    from knet.dataplane.netlink import NetlinkDataplane  # imported late: pyroute2 is heavy

    return NetlinkDataplane(state_dir / "dataplane")


async def up(state_dir: Path, *, nodes: int = 2, store: str | None = None,
             timeout: float = 90.0,
             say: Say = lambda _m: None) -> ClusterRecord:
    """Bring up a cluster of `nodes` nodes and return its record."""
    _need_root("up")
    if not 1 <= nodes <= 50:
        raise KnetError(f"--nodes {nodes}: knet runs 1 to 50 nodes on one host")
    old = ClusterRecord.load(state_dir)
    if old and old.running():
        raise KnetError(f"a cluster is already up in {state_dir} "
                        f"({', '.join(sorted(old.running()))}); use it, or run 'knet down' first")
    if old:
        say(f"cleaning up what a previous cluster left in {state_dir}")
        await down(state_dir)
    rec = ClusterRecord(state_dir=state_dir, nodes=nodes,
                        store=store or f"sqlite:///{state_dir / 'state.db'}",
                        server=f"https://{HOST_IP}:{API_PORT}")
    if not state_dir.exists():
        state_dir.mkdir(parents=True)
        rec.made_dirs.append(str(state_dir))
    rec.save()
    deadline = time.monotonic() + timeout
    try:
        say("host network: bridge knet0 (172.18.0.1/16), routes to pods and services")
        dp = _dataplane(state_dir)
        try:
            await dp.ensure_host()
        finally:
            await dp.close()
        say(f"control plane: API server on {HOST_IP}:{API_PORT} and 127.0.0.1:{API_PORT}, "
            f"store {rec.store}")
        credentials.ensure_node_tokens(state_dir, [f"node-{i}" for i in range(1, nodes + 1)])
        rec.procs["control"] = procs.spawn("control", _knet(
            "control", "--state-dir", str(state_dir), "--listen", f"{HOST_IP}:{API_PORT}",
            "--store", rec.store), log=rec.log("control"))
        rec.save()
        client = await _wait_api(rec, deadline)
        try:
            for i in range(1, nodes + 1):
                name = f"node-{i}"
                rec.procs[name] = procs.spawn(name, _agent_argv(rec, name, i),
                                              log=rec.log(f"agent-{name}"))
                rec.save()
            say(f"nodes: starting {nodes} agent(s), waiting until Ready")
            await _wait_nodes(client, rec, deadline)
            say("system: kube-dns (10.96.0.10) in kube-system")
            await system.ensure(client, state_dir=state_dir)
            await system.wait_ready(client, rec, deadline)
        finally:
            await client.close()
    except BaseException:
        say(f"start failed: undoing what was made (logs kept in {state_dir / 'logs'}; "
            "'knet down' removes them)")
        await down(state_dir, keep_logs=True)
        raise
    return rec


def _agent_argv(rec: ClusterRecord, name: str, index: int) -> list[str]:
    kubeconfig = credentials.node_kubeconfig(rec.state_dir, name)   # system:node:NAME
    return _knet("agent", "--node", name, "--index", str(index), "--state-dir",
                 str(rec.state_dir), "--kubeconfig", str(kubeconfig))


def _node_record(state_dir: Path, name: str, what: str) -> ClusterRecord:
    """The running cluster's record, checked to have node `name`."""
    _need_root(what)
    rec = ClusterRecord.load(state_dir)
    if rec is None or "control" not in rec.running():
        raise KnetError(f"no cluster is running in {state_dir}; start one with 'knet up'")
    if name not in rec.procs or name == "control":
        raise KnetError(f"node {name}: no such node in this cluster; nodes: "
                        + ", ".join(sorted(r for r in rec.procs if r != "control")))
    return rec


def stop_agent(state_dir: Path, name: str) -> None:
    """Stop one node's agent (its containers keep running, as when a kubelet dies)."""
    rec = _node_record(state_dir, name, "node stop")
    if not procs.stop(rec.procs[name], grace=10.0):
        raise KnetError(f"node {name}: its agent is not running; start it with "
                        f"'knet node start {name}'")


def start_agent(state_dir: Path, name: str) -> None:
    """Start a stopped node's agent again; it adopts the pods still running there."""
    rec = _node_record(state_dir, name, "node start")
    if rec.procs[name].alive():
        raise KnetError(f"node {name}: its agent is already running (pid {rec.procs[name].pid})")
    index = int(name.rsplit("-", 1)[-1])
    rec.procs[name] = procs.spawn(name, _agent_argv(rec, name, index),
                                  log=rec.log(f"agent-{name}"))
    rec.save()


async def _wait_api(rec: ClusterRecord, deadline: float) -> HttpClient:
    while time.monotonic() < deadline:
        _check_procs(rec)
        if rec.kubeconfig.exists():
            client = HttpClient.from_kubeconfig(rec.kubeconfig)
            try:
                await client.get("namespaces", "default")
                return client
            except (ApiError, OSError):
                await client.close()
        await asyncio.sleep(0.1)
    raise KnetError(f"the API server did not come up in time; see {rec.log('control')}")


def _check_procs(rec: ClusterRecord) -> None:
    for role, p in rec.procs.items():
        if not p.alive():
            tail = _tail(Path(p.log))
            raise KnetError(f"{role} exited while starting; see {p.log}" + (f": {tail}" if tail else ""))


def _tail(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][-300:] if lines else ""


async def _wait_nodes(client: HttpClient, rec: ClusterRecord, deadline: float) -> None:
    want = {f"node-{i}" for i in range(1, rec.nodes + 1)}
    ready: set[str] = set()
    while time.monotonic() < deadline:
        _check_procs(rec)
        nodes = (await client.list("nodes")).items
        ready = {n["metadata"]["name"] for n in nodes if _node_ready(n)}
        if want <= ready:
            return
        await asyncio.sleep(0.2)
    raise KnetError(f"nodes not Ready in time: {', '.join(sorted(want - ready))}; "
                    f"see the agent logs in {rec.state_dir / 'logs'}")


def _node_ready(node: dict[str, Any]) -> bool:
    for c in node.get("status", {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False


async def down(state_dir: Path, *, say: Say = lambda _m: None, keep_logs: bool = False) -> bool:
    """Remove everything `up` made in state_dir. False if there was nothing to remove.
    keep_logs leaves logs/ and a record without processes, for a later `down` to remove."""
    _need_root("down")
    rec = ClusterRecord.load(state_dir)
    if rec is None:
        return False
    for role in sorted(rec.procs, key=lambda r: r == "control"):  # agents first
        if procs.stop(rec.procs[role], grace=10.0):
            say(f"stopped {role} (pid {rec.procs[role].pid})")
    removed = await _remove_pods(state_dir / "pods")
    if removed:
        say(f"stopped the containers of {removed} pod(s)")
    dp = _dataplane(state_dir)
    try:
        await dp.cleanup()
    finally:
        await dp.close()
    say("removed the cluster's namespaces, links, addresses and routes")
    for name in ("kubeconfig", "state.db", "state.db-wal", "state.db-shm", "control.pid"):
        (state_dir / name).unlink(missing_ok=True)
    for i in range(1, rec.nodes + 1):
        credentials.node_kubeconfig_path(state_dir, f"node-{i}").unlink(missing_ok=True)
    for sub in ("pods", "dataplane", "volumes") + (() if keep_logs else ("logs",)):
        shutil.rmtree(state_dir / sub, ignore_errors=True)
    if keep_logs:
        rec.procs = {}
        rec.save()
        return True
    rec.path.unlink(missing_ok=True)
    for d in reversed(rec.made_dirs):
        shutil.rmtree(d, ignore_errors=True)
    return True


async def _remove_pods(root: Path) -> int:
    """Kill the containers the runtime recorded under root (pods/NODE/POD_DIR) and delete
    their files; returns how many pod directories there were."""
    from knet.runtime.base import PodSandbox
    from knet.runtime.process import ProcessRuntime

    if not root.is_dir():
        return 0
    runtime = ProcessRuntime()
    count = 0
    try:
        for node_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            for pod_dir in sorted(p for p in node_dir.iterdir() if p.is_dir()):
                await runtime.remove(PodSandbox(key=f"{node_dir.name}/{pod_dir.name}", netns="",
                                                hostname="", pod_dir=pod_dir, resolv_conf="",
                                                hosts=""))
                count += 1
    finally:
        await runtime.close()
    return count


async def status(state_dir: Path) -> dict[str, Any]:
    """What is up: processes (alive or not), nodes and their readiness, pods per node."""
    rec = ClusterRecord.load(state_dir)
    if rec is None:
        return {"up": False, "state_dir": str(state_dir)}
    out: dict[str, Any] = {
        "up": bool(rec.running()), "state_dir": str(state_dir), "server": rec.server,
        "kubeconfig": str(rec.kubeconfig),
        "processes": {r: {"pid": p.pid, "alive": p.alive()} for r, p in rec.procs.items()},
    }
    if rec.procs.get("control") and rec.procs["control"].alive() and rec.kubeconfig.exists():
        client = HttpClient.from_kubeconfig(rec.kubeconfig)
        try:
            nodes = (await client.list("nodes")).items
            pods = (await client.list("pods")).items
            out["nodes"] = {
                n["metadata"]["name"]: {
                    "ready": _node_ready(n),
                    "pods": sum(1 for p in pods if p.get("spec", {}).get("nodeName")
                                == n["metadata"]["name"])}
                for n in nodes}
        finally:
            await client.close()
    return out
