"""PV binder + local-path provisioner, pvc-protection and the scheduler's volume binding,
together on the real object layer (fake clock, fake kubelet): default class, wait for first
consumer, PV on the consumer's node, bind, node affinity honoured, reclaim Delete through a
helper pod, Retain, a missing StorageClass, a claim in use not removed."""

from __future__ import annotations

from ctlharness import ControllerHarness
from nodefixtures import add_node

CONTROLLERS = ("persistentvolume-binder", "pvc-protection", "scheduler")


def pvc(name: str = "data", **spec) -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}, **spec}}


def pod(name: str = "user", claim: str = "data") -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}],
                     "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}]}}


async def nodes(h: ControllerHarness) -> None:
    for name in ("node-1", "node-2"):
        await add_node(h.client, h.clock, name)
        await h.client.patch("nodes", name, {"metadata": {"annotations": {
            "knet.io/local-path-root": f"/state/volumes/{name}"}}})


async def get_pvc(h: ControllerHarness, name: str = "data") -> dict | None:
    items = (await h.client.list("persistentvolumeclaims", namespace="default")).items
    return next((c for c in items if c["metadata"]["name"] == name), None)


async def events_for(h: ControllerHarness, name: str) -> list[str]:
    items = (await h.client.list("events", namespace="default")).items
    return [f"{e['reason']}: {e['message']}" for e in items
            if e["involvedObject"]["name"] == name]


async def test_default_class_wait_for_consumer_provision_bind(harness: ControllerHarness):
    await nodes(harness)
    await harness.start(*CONTROLLERS)
    await harness.client.create("persistentvolumeclaims", pvc())

    async def has_class():
        c = await get_pvc(harness)
        return c and c["spec"].get("storageClassName") == "standard"
    await harness.eventually(has_class, what="default class set")
    sc = await harness.client.get("storageclasses", "standard")
    assert sc["provisioner"] == "rancher.io/local-path"
    assert sc["volumeBindingMode"] == "WaitForFirstConsumer" and sc["reclaimPolicy"] == "Delete"

    async def waiting():
        return any("WaitForFirstConsumer" in e for e in await events_for(harness, "data"))
    await harness.eventually(waiting, what="WaitForFirstConsumer event")
    assert (await get_pvc(harness))["status"]["phase"] == "Pending"
    await harness.client.create("pods", pod())

    async def bound():
        c = await get_pvc(harness)
        return c if c and c["status"].get("phase") == "Bound" else None
    claim = await harness.eventually(bound, what="claim bound")
    pv = await harness.client.get("persistentvolumes", claim["spec"]["volumeName"])
    node = (await harness.client.get("pods", "user", namespace="default"))["spec"]["nodeName"]
    assert pv["metadata"]["name"] == f"pvc-{claim['metadata']['uid']}"
    assert pv["spec"]["hostPath"]["path"] == (f"/state/volumes/{node}/pvc-"
                                              f"{claim['metadata']['uid']}_default_data")
    assert pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0][
        "matchExpressions"][0]["values"] == [node]
    assert claim["status"]["capacity"] == {"storage": "1Gi"}

    async def pv_bound():
        v = await harness.client.get("persistentvolumes", pv["metadata"]["name"])
        return v["status"]["phase"] == "Bound"
    await harness.eventually(pv_bound, what="PV Bound")
    # a second consumer of the claim is pinned to the volume's node by its node affinity
    for i in range(4):
        await harness.client.create("pods", pod(f"again-{i}"))

    async def placed():
        pods = [p for p in await harness.pods() if p["metadata"]["name"].startswith("again")]
        return pods if all(p["spec"].get("nodeName") for p in pods) and len(pods) == 4 else None
    assert {p["spec"]["nodeName"] for p in await harness.eventually(placed)} == {node}


async def test_missing_storage_class_stays_pending(harness: ControllerHarness) -> None:
    await nodes(harness)
    await harness.start(*CONTROLLERS)
    await harness.client.create("persistentvolumeclaims", pvc(storageClassName="fast"))
    await harness.client.create("pods", pod())

    async def told():
        return [e for e in await events_for(harness, "data") if "not found" in e]
    assert await harness.eventually(told) == [
        'ProvisioningFailed: storageclass.storage.k8s.io "fast" not found']

    async def unschedulable():
        return [e for e in await events_for(harness, "user") if "FailedScheduling" in e]
    assert (await harness.eventually(unschedulable))[0] == (
        'FailedScheduling: 0/2 nodes are available: storageclass.storage.k8s.io "fast" not '
        'found.')
    assert (await get_pvc(harness))["status"]["phase"] == "Pending"


async def _bound_claim(h: ControllerHarness, **spec) -> tuple[dict, dict]:
    await h.client.create("persistentvolumeclaims", pvc(**spec))
    await h.client.create("pods", pod())

    async def bound():
        c = await get_pvc(h)
        return c if c and c["status"].get("phase") == "Bound" else None
    claim = await h.eventually(bound, what="claim bound")
    return claim, await h.client.get("persistentvolumes", claim["spec"]["volumeName"])


async def test_claim_in_use_is_protected_then_reclaimed_by_helper(harness) -> None:
    await nodes(harness)
    await harness.start(*CONTROLLERS)
    _, pv = await _bound_claim(harness)
    await harness.client.delete("persistentvolumeclaims", "data", namespace="default")
    await harness.settle()
    left = await get_pvc(harness)
    assert left is not None and left["metadata"].get("deletionTimestamp")   # pod uses it
    await harness.client.delete("pods", "user", namespace="default", grace_period=0)
    await harness.eventually(lambda: _none(get_pvc(harness)), what="claim gone")
    helper_name = f"helper-pod-delete-{pv['metadata']['name']}"

    async def helper():
        pods = (await harness.client.list("pods", namespace="kube-system")).items
        return next((p for p in pods if p["metadata"]["name"] == helper_name), None)
    hp = await harness.eventually(helper, what="helper pod")
    assert hp["spec"]["nodeName"] == pv["spec"]["nodeAffinity"]["required"][
        "nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0]
    assert hp["spec"]["volumes"][0]["hostPath"]["path"] == pv["spec"]["hostPath"]["path"] \
        .rsplit("/", 1)[0]
    assert hp["spec"]["containers"][0]["command"][-1] == \
        f"rm -rf '/data/{pv['spec']['hostPath']['path'].rsplit('/', 1)[1]}'"
    released = await harness.client.get("persistentvolumes", pv["metadata"]["name"])
    assert released["status"]["phase"] == "Released"
    await harness.mark_pod(hp, ready=False, phase="Succeeded")

    async def pv_gone():
        names = [v["metadata"]["name"]
                 for v in (await harness.client.list("persistentvolumes")).items]
        return pv["metadata"]["name"] not in names
    await harness.eventually(pv_gone, what="PV deleted")


async def _none(value) -> bool:
    return (await value) is None


async def test_retain_keeps_the_volume_released(harness: ControllerHarness) -> None:
    await nodes(harness)
    await harness.client.create("storageclasses", {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "keep"}, "provisioner": "rancher.io/local-path",
        "reclaimPolicy": "Retain", "volumeBindingMode": "WaitForFirstConsumer"})
    await harness.start(*CONTROLLERS)
    _, pv = await _bound_claim(harness, storageClassName="keep")
    await harness.client.delete("pods", "user", namespace="default", grace_period=0)
    await harness.client.delete("persistentvolumeclaims", "data", namespace="default")

    async def released():
        v = await harness.client.get("persistentvolumes", pv["metadata"]["name"])
        return v["status"]["phase"] == "Released"
    await harness.eventually(released, what="Released")
    await harness.settle()
    assert (await harness.client.get("persistentvolumes", pv["metadata"]["name"]))
    pods = (await harness.client.list("pods", namespace="kube-system")).items
    assert not pods                                   # no helper: the data is kept


async def test_static_volume_binds_by_class_size_and_mode(harness: ControllerHarness) -> None:
    await harness.start("persistentvolume-binder")
    for name, size in (("small", "500Mi"), ("big", "5Gi"), ("right", "2Gi")):
        await harness.client.create("persistentvolumes", {
            "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": "manual", "hostPath": {"path": f"/tmp/{name}"}}})
    await harness.client.create("persistentvolumeclaims", pvc(storageClassName="manual"))

    async def bound():
        c = await get_pvc(harness)
        return c if c and c["status"].get("phase") == "Bound" else None
    assert (await harness.eventually(bound))["spec"]["volumeName"] == "right"


async def test_read_write_once_pod_admits_one_pod(harness: ControllerHarness) -> None:
    await nodes(harness)
    await harness.start(*CONTROLLERS)
    await harness.client.create("persistentvolumeclaims", pvc(accessModes=["ReadWriteOncePod"]))
    await harness.client.create("pods", pod("first"))

    async def scheduled(name: str):
        p = await harness.client.get("pods", name, namespace="default")
        return p["spec"].get("nodeName")
    await harness.eventually(lambda: scheduled("first"), what="first scheduled")
    await harness.client.create("pods", pod("second"))

    async def refused():
        return [e for e in await events_for(harness, "second") if "FailedScheduling" in e]
    assert (await harness.eventually(refused))[0] == (
        "FailedScheduling: 0/2 nodes are available: 2 node has pod using "
        "PersistentVolumeClaim with the same name and ReadWriteOncePod access mode.")
    await harness.client.delete("pods", "first", namespace="default", grace_period=0)
    await harness.eventually(lambda: scheduled("second"), what="second scheduled")
