"""`knet up` / `knet down`: bring a cluster to life on this host, bring back what died, and
remove exactly what was made.

up (fresh): record first, then make: host network (dataplane), the control plane, one agent
per node, wait until every node is Ready, one kube-proxy per node, then the system objects
(kube-dns). Each process is written into cluster.json as soon as it exists, and the record
remembers what the state dir held before, so a failed or interrupted `up` is undone by `down`
like a finished one.
up (on a recorded cluster): restart exactly the recorded components that are dead (control
plane on the same store, agents, kube-proxies) and say which; "already up" if none is.
down: stop agents, proxies and the control plane (by recorded pid + start time), kill the
containers the runtime recorded, remove the dataplane's recorded kernel objects, then every
entry of the state dir that was not there before `up`. Nothing is found by name pattern.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from control.addresses import API_PORT, HOST_IP
from control.client import HttpClient
from control.controllers.lbpool import check_underlay_pool
from control.errors import ApiError
from knet.cluster import components, credentials, procs, system
from knet.cluster.state import RECORD, ClusterOptions, ClusterRecord, proxy_role, proxy_socket
from knet.cluster.status import node_ready, status
from knet.errors import KnetError

if TYPE_CHECKING:
    from knet.dataplane.netlink import NetlinkDataplane

__all__ = ["UpResult", "down", "start_agent", "status", "stop_agent", "up"]

Say = Callable[[str], None]
LEGACY_FILES = ("kubeconfig", "state.db", "state.db-wal", "state.db-shm", "state.db.lock",
                "control.pid", "token", "tls.crt", "tls.key", "pods", "dataplane", "volumes",
                "logs", "proxy", RECORD)


@dataclass
class UpResult:
    rec: ClusterRecord
    restarted: list[str] = field(default_factory=list)   # roles brought back
    adopted: list[str] = field(default_factory=list)     # running, now recorded
    fresh: bool = True                                     # a new cluster was made


def _need_root(what: str) -> None:
    if os.geteuid() != 0:
        raise KnetError(f"knet {what} needs root (network namespaces): run it as root, "
                        "or in a privileged container")


def _dataplane(state_dir: Path) -> NetlinkDataplane:
    from knet.dataplane.netlink import NetlinkDataplane  # imported late: pyroute2 is heavy

    return NetlinkDataplane(state_dir / "dataplane")


async def _ensure_host(state_dir: Path) -> None:
    dp = _dataplane(state_dir)
    try:
        await dp.ensure_host()
    finally:
        await dp.close()


async def up(state_dir: Path, *, nodes: int | None = None, store: str | None = None,
             timeout: float = 90.0, say: Say = lambda _m: None,
             options: dict[str, Any] | None = None) -> UpResult:
    """Bring up a cluster of `nodes` nodes (default 2), or bring back the dead components of
    the one recorded in state_dir. `options`: the ClusterOptions the user asked for by name
    (None or absent = the default for a new cluster, whatever is recorded for an old one)."""
    _need_root("up")
    asked = dict(options or {})
    if unknown := set(asked) - set(ClusterOptions.FLAGS):
        raise TypeError(f"up(): unknown cluster options {sorted(unknown)}")
    if nodes is not None and not 1 <= nodes <= 50:
        raise KnetError(f"--nodes {nodes}: knet runs 1 to 50 nodes on one host")
    if asked.get("lb_pool") is not None:
        try:
            asked["lb_pool"] = check_underlay_pool(asked["lb_pool"])
        except ValueError as exc:
            raise KnetError(f"--lb-pool: {exc}") from None
    old = ClusterRecord.load(state_dir)
    if old and old.procs:
        try:
            old.options.refuse_change(asked, state_dir)
        except ValueError as exc:
            raise KnetError(str(exc)) from None
        return await _repair(old, nodes=nodes, store=store, timeout=timeout, say=say)
    found: list[str] | None = None
    if old:
        say(f"cleaning up what a previous cluster left in {state_dir}")
        found = old.found
        await down(state_dir)
    rec = ClusterRecord(state_dir=state_dir, nodes=nodes or 2,
                        store=store or f"sqlite:///{state_dir / 'state.db'}",
                        server=f"https://{HOST_IP}:{API_PORT}",
                        options=ClusterOptions.asked(asked))
    if state_dir.exists():
        rec.found = found if found is not None else sorted(p.name for p in state_dir.iterdir())
    else:
        state_dir.mkdir(parents=True, mode=0o700)
        rec.made_dirs.append(str(state_dir))
        rec.found = []
    rec.save()
    deadline = time.monotonic() + timeout
    try:
        say("host network: bridge knet0 (172.18.0.1/16), routes to pods and services")
        await _ensure_host(state_dir)
        say(f"control plane: API server on {HOST_IP}:{API_PORT} and 127.0.0.1:{API_PORT}, "
            f"store {rec.store}")
        credentials.ensure_node_tokens(state_dir, rec.node_names())
        components.start_control(rec)
        say(f"nodes: starting {rec.nodes} agent(s) and kube-proxies, waiting until Ready")
        await _bring_up(rec, components.expected_roles(rec)[1:], deadline)
    except BaseException:
        say(f"start failed: undoing what was made (logs kept in {state_dir / 'logs'}; "
            "'knet down' removes them)")
        await down(state_dir, keep_logs=True)
        raise
    return UpResult(rec)


async def _bring_up(rec: ClusterRecord, roles: list[str], deadline: float) -> None:
    """Wait for the API, start the agents and proxies among roles (agents first: a proxy needs
    its node's netns), wait until every node is Ready, then make sure kube-dns is."""
    pending = {r for r in roles if r != "control"}   # dead until started below
    client = await _wait_api(rec, deadline, pending)
    try:
        for name in rec.node_names():
            if name in roles:
                components.start_agent(rec, name)
                pending.discard(name)
        await _wait_nodes(client, rec, deadline, pending)
        proxies = [name for name in rec.node_names() if proxy_role(name) in roles]
        for name in proxies:
            components.start_proxy(rec, name)
        await _wait_proxies(rec, proxies, deadline)
        await system.ensure(client, state_dir=rec.state_dir)
        await system.wait_ready(client, rec, deadline)
    finally:
        await client.close()


async def _repair(rec: ClusterRecord, *, nodes: int | None, store: str | None, timeout: float,
                  say: Say) -> UpResult:
    if nodes is not None and nodes != rec.nodes:
        raise KnetError(f"a cluster of {rec.nodes} node(s) is recorded in {rec.state_dir}; "
                        f"--nodes {nodes} needs a new one: run 'knet down' first")
    if store is not None and store != rec.store:
        raise KnetError(f"the cluster in {rec.state_dir} runs on store {rec.store}; "
                        f"--store {store} needs a new one: run 'knet down' first")
    dead = [r for r in components.expected_roles(rec)
            if r not in rec.procs or not rec.procs[r].alive()]
    if not dead:
        return UpResult(rec, fresh=False)
    deadline = time.monotonic() + timeout
    await _ensure_host(rec.state_dir)
    adopted = []
    if "control" in dead:
        dead.remove("control")
        if components.adopt_control(rec):
            adopted.append("control")
            say(f"control plane: adopted the running knet control (pid "
                f"{rec.procs['control'].pid}) into the record")
        else:
            say(f"restarting the control plane on store {rec.store}")
            components.start_control(rec)
            dead.insert(0, "control")
    for role in dead:
        if role != "control":
            say(f"restarting the {components.describe(role)}")
    await _bring_up(rec, dead, deadline)
    return UpResult(rec, restarted=dead, adopted=adopted, fresh=False)


def _node_record(state_dir: Path, name: str, what: str) -> ClusterRecord:
    """The running cluster's record, checked to have node `name`."""
    _need_root(what)
    rec = ClusterRecord.load(state_dir)
    if rec is None or "control" not in rec.running():
        raise KnetError(f"no cluster is running in {state_dir}; start one with 'knet up'")
    if name not in rec.node_names():
        raise KnetError(f"node {name}: no such node in this cluster; nodes: "
                        + ", ".join(rec.node_names()))
    return rec


def stop_agent(state_dir: Path, name: str) -> None:
    """Stop one node's agent (its containers and its kube-proxy keep running, as when a
    kubelet dies)."""
    rec = _node_record(state_dir, name, "node stop")
    if name not in rec.procs or not procs.stop(rec.procs[name], grace=10.0):
        raise KnetError(f"node {name}: its agent is not running; start it with "
                        f"'knet node start {name}'")


def start_agent(state_dir: Path, name: str) -> None:
    """Start a stopped node's agent again; it adopts the pods still running there."""
    rec = _node_record(state_dir, name, "node start")
    if name in rec.procs and rec.procs[name].alive():
        raise KnetError(f"node {name}: its agent is already running (pid {rec.procs[name].pid})")
    components.start_agent(rec, name)


async def _wait_api(rec: ClusterRecord, deadline: float, pending: set[str]) -> HttpClient:
    while time.monotonic() < deadline:
        _check_procs(rec, pending)
        if rec.kubeconfig.exists():
            client = HttpClient.from_kubeconfig(rec.kubeconfig)
            try:
                await client.get("namespaces", "default")
                return client
            except (ApiError, OSError):
                await client.close()
        await asyncio.sleep(0.1)
    raise KnetError(f"the API server did not come up in time; see {rec.log('control')}")


async def _wait_proxies(rec: ClusterRecord, nodes: list[str], deadline: float) -> None:
    """Until each started kube-proxy serves its flows socket (it is up and watching)."""
    waiting = set(nodes)
    while waiting and time.monotonic() < deadline:
        _check_procs(rec, set())
        waiting = {n for n in waiting if not proxy_socket(rec.state_dir, n).exists()}
        await asyncio.sleep(0.1)
    if waiting:
        raise KnetError(f"kube-proxy of {', '.join(sorted(waiting))} did not start in time; see "
                        + ", ".join(str(rec.log(proxy_role(n))) for n in sorted(waiting)))


def _check_procs(rec: ClusterRecord, pending: set[str]) -> None:
    """Raise if a recorded process (other than those still to be started) is gone."""
    for role, p in rec.procs.items():
        if role not in pending and not p.alive():
            tail = _tail(Path(p.log))
            raise KnetError(f"{role} exited while starting; see {p.log}" + (f": {tail}" if tail else ""))


def _tail(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][-300:] if lines else ""


async def _wait_nodes(client: HttpClient, rec: ClusterRecord, deadline: float,
                      pending: set[str]) -> None:
    want = set(rec.node_names())
    ready: set[str] = set()
    while time.monotonic() < deadline:
        _check_procs(rec, pending)
        nodes = (await client.list("nodes")).items
        ready = {n["metadata"]["name"] for n in nodes if node_ready(n)}
        if want <= ready:
            return
        await asyncio.sleep(0.2)
    raise KnetError(f"nodes not Ready in time: {', '.join(sorted(want - ready))}; "
                    f"see the agent logs in {rec.state_dir / 'logs'}")


async def down(state_dir: Path, *, say: Say = lambda _m: None, keep_logs: bool = False) -> bool:
    """Remove everything `up` made in state_dir. False if there was nothing to remove.
    keep_logs leaves logs/ and a record without processes, for a later `down` to remove."""
    _need_root("down")
    rec = ClusterRecord.load(state_dir)
    if rec is None:
        return False
    if "control" not in rec.running():
        components.adopt_control(rec)   # a hand-started `knet control` on this state dir
    for role in sorted(rec.procs, key=lambda r: r == "control"):  # nodes first
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
    _remove_files(rec, keep_logs=keep_logs, say=say)
    return True


def _remove_files(rec: ClusterRecord, *, keep_logs: bool, say: Say) -> None:
    """Every state dir entry knet added since `up` (per the record), then the dirs it made."""
    state_dir = rec.state_dir
    made = rec.made_entries() if rec.found is not None else \
        [n for n in LEGACY_FILES if (state_dir / n).exists() or (state_dir / n).is_symlink()]
    keep = {"logs", RECORD} if keep_logs else set()
    gone = [n for n in made if n not in keep]
    for name in gone:
        path = state_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if keep_logs:
        rec.procs = {}
        rec.save()
        return
    if gone and str(state_dir) not in rec.made_dirs:
        say(f"removed from {state_dir}: {', '.join(gone)}")
        if rec.found:
            say(f"kept what {state_dir} held before 'knet up': {', '.join(rec.found)}")
    for d in reversed(rec.made_dirs):
        shutil.rmtree(d, ignore_errors=True)


async def _remove_pods(root: Path, *, node: str | None = None) -> int:
    """Kill the containers the runtime recorded under root (pods/NODE/POD_DIR) and delete
    their files (only node's, if given); returns how many pod directories there were."""
    from knet.kubelet.volumes import unmount_pod_volumes
    from knet.runtime.base import PodSandbox
    from knet.runtime.process import ProcessRuntime

    if not root.is_dir():
        return 0
    runtime = ProcessRuntime()
    count = 0
    try:
        for node_dir in sorted(p for p in root.iterdir()
                               if p.is_dir() and node in (None, p.name)):
            for pod_dir in sorted(p for p in node_dir.iterdir() if p.is_dir()):
                await runtime.remove(PodSandbox(key=f"{node_dir.name}/{pod_dir.name}", netns="",
                                                hostname="", pod_dir=pod_dir, resolv_conf="",
                                                hosts=""))
                unmount_pod_volumes(pod_dir)        # emptyDir medium Memory (tmpfs)
                count += 1
    finally:
        await runtime.close()
    return count
