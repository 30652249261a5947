"""The `kubernetes.io/metadata.name` label kube-apiserver puts on every namespace (set on each
write, so it cannot be changed or removed), and the upgrade of objects an older knet stored
without today's defaults (that label, a Service's status)."""

from __future__ import annotations

from control.api import meta
from control.api.local import LocalClient
from control.api.objects import ObjectService
from control.store.memory import MemoryStore

LABEL = "kubernetes.io/metadata.name"


async def test_every_namespace_carries_its_name_label(client: LocalClient) -> None:
    ns = await client.create("namespaces", {"metadata": {"name": "team", "labels": {"a": "b"}}})
    assert ns["metadata"]["labels"] == {"a": "b", LABEL: "team"}
    assert (await client.get("namespaces", "default"))["metadata"]["labels"][LABEL] == "default"
    out = await client.patch("namespaces", "team", {"metadata": {"labels": {LABEL: "other"}}})
    assert out["metadata"]["labels"][LABEL] == "team"
    out = await client.patch("namespaces", "team", {"metadata": {"labels": {LABEL: None}}})
    assert out["metadata"]["labels"][LABEL] == "team"
    got = await client.list("namespaces", label_selector=f"{LABEL}=team")
    assert [n["metadata"]["name"] for n in got.items] == ["team"]


async def test_start_upgrades_what_an_older_knet_stored() -> None:
    store = MemoryStore()
    await store.create("/registry/namespaces/old", meta.encode({
        "kind": "Namespace", "apiVersion": "v1",
        "metadata": {"name": "old", "uid": "u1"}, "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"}}))
    await store.create("/registry/services/old/s", meta.encode({
        "kind": "Service", "apiVersion": "v1",
        "metadata": {"name": "s", "namespace": "old", "uid": "u2"},
        "spec": {"type": "ClusterIP", "clusterIP": "10.96.3.3", "clusterIPs": ["10.96.3.3"],
                 "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]}}))
    objects = ObjectService(store)
    await objects.start()
    ns = await objects.get("namespaces", "old")
    assert ns["metadata"]["labels"] == {LABEL: "old"}
    svc = await objects.get("services", "s", namespace="old")
    assert svc["status"] == {"loadBalancer": {}} and svc["spec"]["clusterIP"] == "10.96.3.3"


async def test_service_status_writes_keep_load_balancer(client: LocalClient) -> None:
    await client.create("services", {"apiVersion": "v1", "kind": "Service",
                                     "metadata": {"name": "s"},
                                     "spec": {"ports": [{"port": 80}]}})
    svc = await client.get("services", "s", namespace="default")
    svc["status"] = {}
    out = await client.update("services", svc, subresource="status")
    assert out["status"] == {"loadBalancer": {}}
