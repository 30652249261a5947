"""Deletion semantics: finalizers, propagation policies, graceful pod deletion, cascading
namespace deletion, and Service addresses freed on delete."""

from __future__ import annotations

import pytest

from control.api.local import LocalClient
from control.errors import Conflict, Invalid, NotFound


def pod(name: str, node: str | None = None, namespace: str = "default") -> dict:
    spec: dict = {"containers": [{"name": "c", "image": "knet/whoami"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def configmap(name: str, **meta: object) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, **meta}, "data": {"k": "v"}}


async def test_plain_delete_is_immediate(client: LocalClient) -> None:
    await client.create("configmaps", configmap("c"))
    out = await client.delete("configmaps", "c", namespace="default")
    assert out["metadata"]["name"] == "c"
    with pytest.raises(NotFound):
        await client.get("configmaps", "c", namespace="default")
    with pytest.raises(NotFound, match='configmaps "c" not found'):
        await client.delete("configmaps", "c", namespace="default")


async def test_finalizers_hold_until_removed(client: LocalClient) -> None:
    await client.create("configmaps", configmap("c", finalizers=["example.com/hold"]))
    marked = await client.delete("configmaps", "c", namespace="default")
    assert marked["metadata"]["deletionTimestamp"]
    got = await client.get("configmaps", "c", namespace="default")
    assert got["metadata"]["deletionGracePeriodSeconds"] == 0
    await client.patch("configmaps", "c", {"metadata": {"finalizers": None}},
                       namespace="default")
    with pytest.raises(NotFound):
        await client.get("configmaps", "c", namespace="default")


async def test_propagation_policies_add_finalizers(client: LocalClient) -> None:
    await client.create("configmaps", configmap("fg"))
    await client.create("configmaps", configmap("or"))
    fg = await client.delete("configmaps", "fg", namespace="default", propagation="Foreground")
    orphan = await client.delete("configmaps", "or", namespace="default", propagation="Orphan")
    assert fg["metadata"]["finalizers"] == ["foregroundDeletion"]
    assert orphan["metadata"]["finalizers"] == ["orphan"]
    assert fg["metadata"]["deletionTimestamp"]


async def test_preconditions(client: LocalClient) -> None:
    await client.create("configmaps", configmap("c"))
    with pytest.raises(Conflict, match="Precondition failed"):
        await client.delete("configmaps", "c", namespace="default", preconditions_uid="x")


async def test_bound_pod_is_deleted_gracefully(client: LocalClient) -> None:
    await client.create("pods", pod("bound", node="node-1"))
    await client.create("pods", pod("free"))
    marked = await client.delete("pods", "bound", namespace="default")
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 30
    assert (await client.get("pods", "bound", namespace="default"))["metadata"][
        "deletionTimestamp"]
    await client.delete("pods", "free", namespace="default")
    with pytest.raises(NotFound):
        await client.get("pods", "free", namespace="default")
    await client.delete("pods", "bound", namespace="default", grace_period=0)  # the kubelet
    with pytest.raises(NotFound):
        await client.get("pods", "bound", namespace="default")


async def test_namespace_cascade(client: LocalClient) -> None:
    await client.create("namespaces", {"metadata": {"name": "team"}})
    await client.create("configmaps", configmap("c"), namespace="team")
    await client.create("pods", pod("running", node="node-1", namespace="team"))
    out = await client.delete("namespaces", "team")
    assert out["status"]["phase"] == "Terminating"
    with pytest.raises(NotFound):
        await client.get("configmaps", "c", namespace="team")
    with pytest.raises(Exception, match="being terminated"):
        await client.create("configmaps", configmap("d"), namespace="team")
    await client.delete("pods", "running", namespace="team", grace_period=0)
    with pytest.raises(NotFound):
        await client.get("namespaces", "team")


async def test_system_namespace_cannot_be_deleted(client: LocalClient) -> None:
    with pytest.raises(Exception, match="may not be deleted"):
        await client.delete("namespaces", "default")


def service(name: str, **spec: object) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}], **spec}}


async def test_service_addresses(client: LocalClient) -> None:
    a = await client.create("services", service("a", type="NodePort",
                                                 ports=[{"port": 80, "nodePort": 30100}]))
    assert a["spec"]["clusterIP"].startswith("10.")
    assert a["spec"]["ports"][0]["nodePort"] == 30100
    with pytest.raises(Invalid, match="provided port is already allocated") as err:
        await client.create("services", service("b", type="NodePort",
                                                ports=[{"port": 80, "nodePort": 30100}]))
    assert err.value.causes[0].field == "spec.ports[0].nodePort"
    with pytest.raises(NotFound):
        await client.get("services", "b", namespace="default")     # nothing half-written
    with pytest.raises(Invalid, match="already allocated"):
        await client.create("services", service("c", clusterIP=a["spec"]["clusterIP"]))
    headless = await client.create("services", service("h", clusterIP="None"))
    assert headless["spec"]["clusterIP"] == "None"
    dns = await client.create("services", service("kube-dns", clusterIP="10.96.0.10"))
    assert dns["spec"]["clusterIP"] == "10.96.0.10"
    await client.delete("services", "a", namespace="default")
    again = await client.create("services", service("b", type="NodePort",
                                                    clusterIP=a["spec"]["clusterIP"],
                                                    ports=[{"port": 80, "nodePort": 30100}]))
    assert again["spec"]["clusterIP"] == a["spec"]["clusterIP"]


async def test_service_update_keeps_addresses(client: LocalClient) -> None:
    a = await client.create("services", service("a", type="NodePort"))
    port = a["spec"]["ports"][0]["nodePort"]
    body = service("a", type="NodePort")               # as a user's manifest: no IP, no port
    body["metadata"]["resourceVersion"] = a["metadata"]["resourceVersion"]
    out = await client.update("services", body)
    assert out["spec"]["clusterIP"] == a["spec"]["clusterIP"]
    assert out["spec"]["ports"][0]["nodePort"] == port
    out = await client.patch("services", "a", {"spec": {"type": "ClusterIP"}})
    assert "nodePort" not in out["spec"]["ports"][0]
    reuse = await client.create("services", service("b", type="NodePort",
                                                     ports=[{"port": 80, "nodePort": port}]))
    assert reuse["spec"]["ports"][0]["nodePort"] == port          # freed by the update
