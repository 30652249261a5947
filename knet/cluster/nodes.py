"""`knet node add [NAME]` / `knet node remove NAME`: nodes join and leave a running cluster.

add: record first (the node's name and index in cluster.json, so `knet down` removes it even
if the join fails half-way), then its identity (a system:node:NAME token the API server picks
up from the token file, and its kubeconfig), then its agent, which makes the node's netns,
registers the Node with the pod CIDR of its index and keeps host-gw routes to the others (the
other agents add routes to it when they see the Node), then its kube-proxy; returns once the
node is Ready and its proxy serves.
remove: stop its kube-proxy and agent, kill its containers, delete the Node object (the pod
garbage collector then deletes the pods bound to it, and their controllers replace them
elsewhere), remove its netns and routes (the other agents drop theirs to it when the Node
goes), its token and kubeconfig, and its entry in the record. Draining first is kubectl's job.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from control.auth.tokenfile import TOKENS_FILE, node_user, remove_tokens
from control.client import HttpClient
from control.errors import NotFound
from knet.cluster import credentials, lifecycle, procs
from knet.cluster.state import ClusterRecord, proxy_role, proxy_socket
from knet.dataplane import names
from knet.errors import KnetError

__all__ = ["add_node", "remove_node"]

MAX_INDEX = 250


def _running(state_dir: Path, what: str) -> ClusterRecord:
    lifecycle._need_root(what)
    rec = ClusterRecord.load(state_dir)
    if rec is None or "control" not in rec.running():
        raise KnetError(f"no cluster is running in {state_dir}; start one with 'knet up'")
    return rec


def _free_index(used: set[int]) -> int:
    for i in range(1, MAX_INDEX + 1):
        if i not in used:
            return i
    raise KnetError(f"this cluster has {len(used)} nodes, knet's most on one host; remove one "
                    "with 'knet node remove NAME'")


async def add_node(state_dir: Path, name: str | None = None, *, timeout: float = 90.0,
                   say: lifecycle.Say = lambda _m: None) -> str:
    """Join a new node (default name node-I, I its index) to the running cluster."""
    rec = _running(state_dir, "node add")
    nodes = rec.node_indexes()
    used = set(nodes.values())
    index = _free_index(used)
    while name is None and f"node-{index}" in nodes:   # a default name someone took by hand
        used.add(index)
        index = _free_index(used)
    name = name or f"node-{index}"
    names.validate_node_name(name)
    if name in nodes:
        raise KnetError(f"node {name}: already in this cluster; pick another name, or remove it "
                        f"first with 'knet node remove {name}'")
    client = HttpClient.from_kubeconfig(rec.kubeconfig)
    try:
        await client.get("nodes", name)
        raise KnetError(f"node {name}: a Node object of that name exists in the API (not one "
                        f"knet runs); delete it with 'kubectl delete node {name}' or pick "
                        "another name")
    except NotFound:
        pass
    finally:
        await client.close()
    rec.set_nodes({**nodes, name: index})
    rec.save()
    say(f"node {name}: index {index}, identity system:node:{name}, starting its agent and "
        "kube-proxy")
    try:
        credentials.ensure_node_tokens(state_dir, [name])
        await lifecycle._bring_up(rec, [name, proxy_role(name)], time.monotonic() + timeout)
    except BaseException:
        say(f"node {name}: join failed; removing what was made (logs kept in "
            f"{state_dir / 'logs'})")
        await _take_down(rec, name)
        raise
    return name


async def remove_node(state_dir: Path, name: str, *,
                      say: lifecycle.Say = lambda _m: None) -> int:
    """Remove node `name` from the running cluster; returns how many pods ran there."""
    rec = _running(state_dir, "node remove")
    if name not in rec.node_names():
        raise KnetError(f"node {name}: no such node in this cluster; nodes: "
                        + ", ".join(rec.node_names()) + " (see 'knet status')")
    if len(rec.node_names()) == 1:
        raise KnetError(f"node {name}: the cluster's last node; stop the cluster with "
                        "'knet down' instead")
    return await _take_down(rec, name, say=say)


async def _take_down(rec: ClusterRecord, name: str, *,
                     say: lifecycle.Say = lambda _m: None) -> int:
    state_dir = rec.state_dir
    for role in (proxy_role(name), name):
        if role in rec.procs and procs.stop(rec.procs[role], grace=10.0):
            say(f"stopped {role} (pid {rec.procs[role].pid})")
    pods = await lifecycle._remove_pods(state_dir / "pods", node=name)
    shutil.rmtree(state_dir / "pods" / name, ignore_errors=True)
    client = HttpClient.from_kubeconfig(rec.kubeconfig)
    try:
        await client.delete("nodes", name)
        say(f"deleted Node {name}; the pod garbage collector deletes the pods bound to it")
    except NotFound:
        pass
    finally:
        await client.close()
    dp = lifecycle._dataplane(state_dir)
    try:
        await dp.delete_node(name)
    finally:
        await dp.close()
    say(f"removed the netns of {name}, its links and its routes")
    remove_tokens(state_dir / TOKENS_FILE, [node_user(name).name])
    credentials.node_kubeconfig_path(state_dir, name).unlink(missing_ok=True)
    proxy_socket(state_dir, name).unlink(missing_ok=True)
    for role in (proxy_role(name), name):
        rec.procs.pop(role, None)
    rec.set_nodes({n: i for n, i in rec.node_indexes().items() if n != name})
    rec.save()
    return pods
