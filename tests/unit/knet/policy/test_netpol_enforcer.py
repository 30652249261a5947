"""The node enforcer on a real in-memory control plane (informers over LocalClient) and the
fake kernel (FakeNft): one transaction per change, only this node's pods, nothing when
nothing changed, and a logged drop turned into a DROPPED flow record naming the policies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from control.api.local import LocalClient
from control.api.objects import ObjectService
from control.clientbase import Obj
from control.store.memory import MemoryStore
from knet.dataplane.nflog import Logged
from knet.dataplane.nft import FakeNft
from knet.flows.records import format_flow
from knet.policy.enforcer import PolicyEnforcer
from knet.policy.nftrules import FAMILY, TABLE
from knet.proxy.flows import FlowRecord


class FakeLogs:
    def __init__(self) -> None:
        self.callback: Callable[[Logged], None] | None = None
        self.closed = False

    def start(self, callback: Callable[[Logged], None]) -> None:
        self.callback = callback

    def close(self) -> None:
        self.closed = True


@pytest.fixture
async def client() -> AsyncIterator[LocalClient]:
    store = MemoryStore()
    objects = ObjectService(store)
    await objects.start()
    for ns in ("default", "x", "y"):
        await objects.create("namespaces", {"metadata": {"name": ns}})
    c = LocalClient(objects)
    yield c
    await c.close()
    await store.close()


async def _pod(client: LocalClient, ns: str, name: str, ip: str, node: str) -> None:
    made = await client.create("pods", {"metadata": {"name": name, "namespace": ns,
                                                     "labels": {"pod": name}},
                                        "spec": {"nodeName": node, "containers": [
                                            {"name": "c", "image": "busybox"}]}}, namespace=ns)
    made["status"] = {"phase": "Running", "podIP": ip}
    await client.update("pods", made, subresource="status")


def _policy(ns: str, name: str, spec: dict[str, Any]) -> Obj:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


async def until(cond: Callable[[], bool], what: str) -> None:
    for _ in range(300):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def _chains(nft: FakeNft) -> set[str]:
    return set(nft.tables[("knet-node-1", FAMILY, TABLE)]["chains"])


async def test_one_transaction_per_change_for_this_nodes_pods_only(client: LocalClient) -> None:
    await _pod(client, "x", "a", "10.244.1.2", "node-1")
    await _pod(client, "x", "b", "10.244.2.2", "node-2")
    nft, records = FakeNft(), []
    enf = PolicyEnforcer(client, node="node-1", netns="knet-node-1", nft=nft,
                         record=records.append, logs=FakeLogs(), debounce=0.01)
    await enf.start()
    try:
        assert nft.batches == 1 and _chains(nft) == {"forward", "output", "policy"}
        await client.create("networkpolicies", _policy("x", "deny", {"podSelector": {}}),
                            namespace="x")
        await until(lambda: nft.batches == 2, "the policy programmed")
        # x/b lives on node-2: its chain is node-2's business
        assert _chains(nft) == {"forward", "output", "policy", "ingress_x_a"}
        # a change that does not change this node's table costs no transaction
        await _pod(client, "y", "c", "10.244.2.9", "node-2")
        await asyncio.sleep(0.1)
        assert nft.batches == 2
        await client.delete("networkpolicies", "deny", namespace="x")
        await until(lambda: nft.batches == 3, "the deletion programmed")
        assert "ingress_x_a" not in _chains(nft)
    finally:
        await enf.stop()


async def test_a_logged_drop_is_a_flow_record_naming_the_policies(client: LocalClient) -> None:
    await _pod(client, "x", "a", "10.244.1.2", "node-1")
    await _pod(client, "y", "b", "10.244.2.3", "node-2")
    await client.create("networkpolicies", _policy("x", "deny", {"podSelector": {}}),
                        namespace="x")
    nft, records, logs = FakeNft(), [], FakeLogs()
    enf = PolicyEnforcer(client, node="node-1", netns="knet-node-1", nft=nft,
                         record=records.append, logs=logs, debounce=0.01)
    await enf.start()
    try:
        assert logs.callback is not None
        pkt = Logged(1000.0, "knetpol ingress 10.244.1.2 ", "tcp", "10.244.2.3", "10.244.1.2",
                     40000, 80)
        logs.callback(pkt)
        logs.callback(Logged(1001.0, *list(pkt.__dict__.values())[1:]))   # the SYN again
        logs.callback(Logged(1000.0, "someone else's", "tcp", "1.1.1.1", "2.2.2.2", 1, 2))
        assert len(records) == 1
        rec: FlowRecord = records[0]
        assert (rec.verdict, rec.client_pod, rec.endpoint_pod, rec.netpol_pod,
                rec.netpol_policies) == ("DROPPED", "y/b", "x/a", "x/a", ["x/deny"])
        line = format_flow({**rec.to_dict(), "kind": "proxy", "source": "node-1"})
        assert ("y/b (10.244.2.3:40000) -> x/a (10.244.1.2:80) DROPPED tcp netpol ingress "
                "default deny: x/a isolated by x/deny [node-1]") in line
    finally:
        await enf.stop()
    assert logs.closed
