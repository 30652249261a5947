"""The agent's Node: registration (capacity from the host, InternalIP = the node's underlay
address, labels, the agent URL for logs/exec), the Ready condition heartbeat, and the Lease in
kube-node-lease renewed every few seconds (the node lifecycle controller watches it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import socket
import time
from typing import Any

from control.clientbase import Client
from control.errors import AlreadyExists, ApiError, NotFound
from knet import __version__
from knet.kubelet.status import rfc3339

log = logging.getLogger(__name__)
Obj = dict[str, Any]
LEASE_SECONDS = 40


def _memory_kib() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 8 * 1024 * 1024


# Kubernetes' kubelet defaults to 110 pods per node; a knet node's /24 holds 253, and labs
# and benchmarks put hundreds of pods on two nodes, so knet's default is 250.
DEFAULT_MAX_PODS = 250


def node_object(name: str, *, underlay_ip: str, pod_cidr: str, agent_url: str,
                netns: str, max_pods: int = DEFAULT_MAX_PODS) -> Obj:
    cap = {"cpu": str(os.cpu_count() or 1), "memory": f"{_memory_kib()}Ki",
           "pods": str(max_pods),
           "ephemeral-storage": "10Gi"}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(
                platform.machine(), platform.machine())},
            "annotations": {"knet.io/agent-url": agent_url, "knet.io/netns": netns,
                            "node.alpha.kubernetes.io/ttl": "0"}},
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
        "status": {"capacity": cap, "allocatable": dict(cap),
                   "addresses": [{"type": "InternalIP", "address": underlay_ip},
                                 {"type": "Hostname", "address": name}],
                   "nodeInfo": {"kubeletVersion": "v1.32.0", "kubeProxyVersion": "v1.32.0",
                                "containerRuntimeVersion": f"knet://{__version__}",
                                "operatingSystem": "linux", "architecture": platform.machine(),
                                "osImage": f"knet on {socket.gethostname()}",
                                "kernelVersion": platform.release(), "machineID": name,
                                "systemUUID": name, "bootID": name}}}


def conditions(now: float, network: tuple[bool, str, str] | None = None) -> list[Obj]:
    """The node's conditions; `network` (unavailable, reason, message): the overlay's
    NetworkUnavailable condition, as flannel sets it (None: the node has no overlay)."""
    stamp = rfc3339(now)
    out = [{"type": t, "status": "False", "reason": r, "message": m,
            "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}
           for t, r, m in (("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                           ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                           ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"))]
    out.append({"type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "knet agent is posting ready status", "lastHeartbeatTime": stamp,
                "lastTransitionTime": stamp})
    if network is not None:
        down, reason, message = network
        out.append({"type": "NetworkUnavailable", "status": "True" if down else "False",
                    "reason": reason, "message": message, "lastHeartbeatTime": stamp,
                    "lastTransitionTime": stamp})
    return out


class NodeAgent:
    """Registers the node and keeps it alive (heartbeat + lease) until stopped."""

    def __init__(self, client: Client, node: Obj, *, lease_period: float = 2.0,
                 heartbeat_period: float = 10.0) -> None:
        self.client = client
        self.node = node
        self.name = node["metadata"]["name"]
        self.lease_period = lease_period
        self.heartbeat_period = heartbeat_period
        self.network: tuple[bool, str, str] | None = None   # NetworkUnavailable (overlay)
        self._task: asyncio.Task[None] | None = None
        self._beat_now = asyncio.Event()

    async def register(self) -> Obj:
        """Create the Node, or take over an existing one of the same name (agent restart)."""
        body = dict(self.node)
        body["status"] = {**body["status"], "conditions": conditions(time.time(), self.network)}
        try:
            created = await self.client.create("nodes", body)
        except AlreadyExists:
            cur = await self.client.get("nodes", self.name)
            cur["metadata"].setdefault("labels", {}).update(body["metadata"]["labels"])
            cur["metadata"].setdefault("annotations", {}).update(body["metadata"]["annotations"])
            cur["spec"] = {**cur.get("spec", {}), **body["spec"]}
            created = await self.client.update("nodes", cur)
        await self.client.patch("nodes", self.name, {"status": body["status"]},
                                subresource="status")
        await self._renew_lease()
        return created

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"node {self.name}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def set_network(self, network: tuple[bool, str, str]) -> None:
        """The overlay's verdict on this node (NetworkUnavailable); posted at once if changed."""
        if network != self.network:
            self.network = network
            self._beat_now.set()

    async def _loop(self) -> None:
        last_beat = time.monotonic()
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._beat_now.wait(), self.lease_period)
            try:
                await self._renew_lease()
                if self._beat_now.is_set() or \
                        time.monotonic() - last_beat >= self.heartbeat_period:
                    self._beat_now.clear()
                    await self.client.patch("nodes", self.name, {"status": {
                        "conditions": conditions(time.time(), self.network)}},
                        subresource="status")
                    last_beat = time.monotonic()
            except (ApiError, OSError) as exc:
                log.warning("node %s: heartbeat failed: %s", self.name, exc)

    async def _renew_lease(self) -> None:
        now = rfc3339(time.time()).replace("Z", ".000000Z")
        spec = {"holderIdentity": self.name, "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": now}
        try:
            await self.client.patch("leases", self.name, {"spec": spec},
                                    namespace="kube-node-lease")
        except NotFound:
            await self.client.create("leases", {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": "kube-node-lease"},
                "spec": {**spec, "acquireTime": now}}, namespace="kube-node-lease")
