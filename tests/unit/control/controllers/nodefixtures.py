"""Nodes and Leases as a kubelet would post them, for the node lifecycle and scheduler tests."""

from __future__ import annotations

from control.api.local import LocalClient
from control.clock import FakeClock


def micro(clock: FakeClock) -> str:
    return clock.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def add_node(client: LocalClient, clock: FakeClock, name: str, *, ready: bool = True,
                   labels: dict | None = None, taints: list | None = None, cpu: str = "4",
                   memory: str = "8Gi", pods: str = "110", lease: bool = True) -> dict:
    node = await client.create("nodes", {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {"taints": taints} if taints else {}})
    node["status"] = {
        "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                        "reason": "KubeletReady", "lastHeartbeatTime": micro(clock)[:19] + "Z"}],
        "allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
        "capacity": {"cpu": cpu, "memory": memory, "pods": pods}}
    node = await client.update("nodes", node, subresource="status")
    if lease:
        await client.create("leases", {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                     "renewTime": micro(clock)}}, namespace="kube-node-lease")
    return node


async def renew(client: LocalClient, clock: FakeClock, name: str) -> None:
    await client.patch("leases", name, {"spec": {"renewTime": micro(clock)}},
                       namespace="kube-node-lease")
