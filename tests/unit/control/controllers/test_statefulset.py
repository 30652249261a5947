"""StatefulSet controller on the real object layer with a fake kubelet (mark_pod): ordered
creation and scale-down, Parallel, identity (names, labels, hostname/subdomain, claims),
rolling update with a partition, OnDelete, revisions and status, claim retention."""

from __future__ import annotations

import copy

import pytest
from ctlharness import ControllerHarness

from control.errors import Invalid
from control.models.validation import admit


def sts(replicas: int = 3, **spec_extra) -> dict:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
            "spec": {"serviceName": "nginx", "replicas": replicas,
                     "selector": {"matchLabels": {"app": "nginx"}},
                     "template": {"metadata": {"labels": {"app": "nginx"}},
                                  "spec": {"containers": [{
                                      "name": "nginx", "image": "nginx:1",
                                      "volumeMounts": [{"name": "www",
                                                        "mountPath": "/usr/share/nginx/html"}]}]}},
                     "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {
                         "accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": "1Gi"}}}}],
                     **spec_extra}}


async def names(h: ControllerHarness) -> list[str]:
    return sorted(p["metadata"]["name"] for p in await h.pods(selector="app=nginx")
                  if not p["metadata"].get("deletionTimestamp"))


async def wait_names(h: ControllerHarness, want: list[str]) -> None:
    async def check():
        return await names(h) == want
    await h.eventually(check, what=f"pods {want}")


async def ready(h: ControllerHarness, name: str) -> dict:
    pod = await h.client.get("pods", name, namespace="default")
    return await h.mark_pod(pod, ready=True)


async def gone(h: ControllerHarness, name: str) -> None:
    """What a kubelet does for a deleted pod: finish the deletion."""
    pods = {p["metadata"]["name"]: p for p in await h.pods()}
    if name in pods:
        await h.client.delete("pods", name, namespace="default", grace_period=0)


async def test_ordered_ready_creation_identity_and_claims(harness: ControllerHarness) -> None:
    await harness.start("statefulset")
    await harness.client.create("statefulsets", sts())
    await wait_names(harness, ["web-0"])
    await harness.settle()
    assert await names(harness) == ["web-0"]           # web-1 waits for web-0 Ready
    pod = await harness.client.get("pods", "web-0", namespace="default")
    labels = pod["metadata"]["labels"]
    assert labels["statefulset.kubernetes.io/pod-name"] == "web-0"
    assert labels["apps.kubernetes.io/pod-index"] == "0"
    assert labels["controller-revision-hash"].startswith("web-")
    assert pod["spec"]["hostname"] == "web-0" and pod["spec"]["subdomain"] == "nginx"
    assert pod["spec"]["volumes"] == [{"name": "www", "persistentVolumeClaim": {
        "claimName": "www-web-0"}}]
    pvc = await harness.client.get("persistentvolumeclaims", "www-web-0", namespace="default")
    assert pvc["metadata"]["labels"] == {"app": "nginx"}
    assert pvc["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert "kubernetes.io/pvc-protection" in pvc["metadata"]["finalizers"]
    await ready(harness, "web-0")
    await wait_names(harness, ["web-0", "web-1"])
    await ready(harness, "web-1")
    await wait_names(harness, ["web-0", "web-1", "web-2"])
    await ready(harness, "web-2")

    async def status():
        s = (await harness.client.get("statefulsets", "web", namespace="default"))["status"]
        return s if s.get("readyReplicas") == 3 else None
    s = await harness.eventually(status, what="3 ready")
    assert s["replicas"] == 3 and s["availableReplicas"] == 3
    assert s["currentRevision"] == s["updateRevision"] == labels["controller-revision-hash"]
    assert s["currentReplicas"] == s["updatedReplicas"] == 3


async def test_scale_down_from_highest_one_at_a_time(harness: ControllerHarness) -> None:
    await harness.start("statefulset")
    await harness.client.create("statefulsets", sts(podManagementPolicy="Parallel"))
    await wait_names(harness, ["web-0", "web-1", "web-2"])
    for n in ("web-0", "web-1", "web-2"):
        await ready(harness, n, )
    body = await harness.client.get("statefulsets", "web", namespace="default")
    body["spec"]["replicas"] = 1
    body["spec"]["podManagementPolicy"] = "Parallel"
    await harness.client.update("statefulsets", body)
    await wait_names(harness, ["web-0"])              # Parallel: both at once
    claims = (await harness.client.list("persistentvolumeclaims", namespace="default")).items
    assert sorted(c["metadata"]["name"] for c in claims) == ["www-web-0", "www-web-1",
                                                             "www-web-2"]   # Retain


async def test_ordered_scale_down_waits(harness: ControllerHarness) -> None:
    await harness.start("statefulset")
    await harness.client.create("statefulsets", sts(replicas=3))
    for n in ("web-0", "web-1", "web-2"):
        await harness.eventually(lambda n=n: _has(harness, n), what=n)
        await ready(harness, n, )
    for n in ("web-0", "web-1", "web-2"):
        await _bind(harness, n)
    body = await harness.client.get("statefulsets", "web", namespace="default")
    body["spec"]["replicas"] = 1
    await harness.client.update("statefulsets", body)

    async def terminating():
        pods = {p["metadata"]["name"]: p for p in await harness.pods()}
        return [n for n, p in sorted(pods.items()) if p["metadata"].get("deletionTimestamp")]
    assert await harness.eventually(terminating, what="web-2 terminating") == ["web-2"]
    await harness.settle()
    assert await terminating() == ["web-2"]           # web-1 waits until web-2 is gone
    await gone(harness, "web-2")
    assert await harness.eventually(terminating, what="web-1 terminating") == ["web-1"]


async def _has(h: ControllerHarness, name: str) -> bool:
    return name in await names(h)


async def _bind(h: ControllerHarness, name: str) -> None:
    """Bound to a node, so deletion is graceful (the pod stays Terminating)."""
    pod = await h.client.get("pods", name, namespace="default")
    await h.mark_pod(pod, ready=True, node="node-1")


async def test_rolling_update_with_partition(harness: ControllerHarness) -> None:
    await harness.start("statefulset")
    await harness.client.create("statefulsets", sts(podManagementPolicy="Parallel"))
    await wait_names(harness, ["web-0", "web-1", "web-2"])
    for n in ("web-0", "web-1", "web-2"):
        await ready(harness, n)
    old_rev = (await harness.client.get("pods", "web-0", namespace="default")
               )["metadata"]["labels"]["controller-revision-hash"]
    body = await harness.client.get("statefulsets", "web", namespace="default")
    body["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    body["spec"]["updateStrategy"] = {"type": "RollingUpdate",
                                      "rollingUpdate": {"partition": 2}}
    await harness.client.update("statefulsets", body)

    async def image_of(name: str) -> str | None:
        pods = {p["metadata"]["name"]: p for p in await harness.pods()}
        p = pods.get(name)
        return None if p is None or p["metadata"].get("deletionTimestamp") else \
            p["spec"]["containers"][0]["image"]
    await harness.eventually(lambda: _is(image_of("web-2"), "nginx:2"), what="web-2 updated")
    await ready(harness, "web-2")
    await harness.settle()
    assert await image_of("web-1") == "nginx:1" and await image_of("web-0") == "nginx:1"
    s = (await harness.client.get("statefulsets", "web", namespace="default"))["status"]
    assert s["currentRevision"] == old_rev and s["updateRevision"] != old_rev
    revs = (await harness.client.list("controllerrevisions", namespace="default")).items
    assert sorted(r["revision"] for r in revs) == [1, 2]
    # partition 0: the rest follow from the highest ordinal down
    body = await harness.client.get("statefulsets", "web", namespace="default")
    body["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = 0
    await harness.client.update("statefulsets", body)
    await harness.eventually(lambda: _is(image_of("web-1"), "nginx:2"), what="web-1 updated")
    assert await image_of("web-0") == "nginx:1"       # waits for web-1 to be Ready
    await ready(harness, "web-1")
    await harness.eventually(lambda: _is(image_of("web-0"), "nginx:2"), what="web-0 updated")
    await ready(harness, "web-0")

    async def done():
        s = (await harness.client.get("statefulsets", "web", namespace="default"))["status"]
        return s if s["currentRevision"] == s["updateRevision"] else None
    s = await harness.eventually(done, what="rollout complete")
    assert s["updatedReplicas"] == 3 and s["currentReplicas"] == 3


async def _is(value, want) -> bool:
    return (await value) == want


async def test_on_delete_leaves_pods(harness: ControllerHarness) -> None:
    await harness.start("statefulset")
    await harness.client.create("statefulsets", sts(
        replicas=1, updateStrategy={"type": "OnDelete"}))
    await wait_names(harness, ["web-0"])
    await ready(harness, "web-0")
    body = await harness.client.get("statefulsets", "web", namespace="default")
    body["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    await harness.client.update("statefulsets", body)
    await harness.settle()
    pod = await harness.client.get("pods", "web-0", namespace="default")
    assert pod["spec"]["containers"][0]["image"] == "nginx:1"
    await harness.client.delete("pods", "web-0", namespace="default")

    async def new_image():
        pods = [p for p in await harness.pods() if p["metadata"]["name"] == "web-0"]
        return pods and pods[0]["spec"]["containers"][0]["image"] == "nginx:2"
    await harness.eventually(new_image, what="web-0 re-created at the update revision")


async def test_retention_when_deleted_delete_owns_claims(harness: ControllerHarness) -> None:
    await harness.start("statefulset")
    owner = await harness.client.create("statefulsets", sts(
        replicas=1, persistentVolumeClaimRetentionPolicy={"whenDeleted": "Delete",
                                                          "whenScaled": "Retain"}))
    await wait_names(harness, ["web-0"])
    pvc = await harness.client.get("persistentvolumeclaims", "www-web-0", namespace="default")
    refs = pvc["metadata"]["ownerReferences"]
    assert refs[0]["uid"] == owner["metadata"]["uid"] and not refs[0]["controller"]


async def test_failed_pod_is_replaced(harness: ControllerHarness) -> None:
    await harness.start("statefulset")
    await harness.client.create("statefulsets", sts(replicas=1))
    await wait_names(harness, ["web-0"])
    pod = await harness.client.get("pods", "web-0", namespace="default")
    uid = pod["metadata"]["uid"]
    await harness.mark_pod(pod, ready=False, phase="Failed")

    async def replaced():
        pods = [p for p in await harness.pods() if p["metadata"]["name"] == "web-0"]
        return pods and pods[0]["metadata"]["uid"] != uid
    await harness.eventually(replaced, what="web-0 re-created")


def test_tutorial_yaml_is_admitted_and_bad_input_refused() -> None:
    obj, warnings = admit("statefulsets", sts())
    assert warnings == []
    assert obj["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain", "whenScaled": "Retain"}
    assert obj["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                             "rollingUpdate": {"partition": 0}}
    bad = sts(podManagementPolicy="Sometimes")
    bad["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["name"] = "nope"
    with pytest.raises(Invalid) as err:
        admit("statefulsets", bad)
    causes = {c.field: c.message for c in err.value.causes}
    assert "must be 'OrderedReady' or 'Parallel'" in causes["spec.podManagementPolicy"]
    assert causes["spec.template.spec.containers[0].volumeMounts[0].name"] == \
        'Not found: "nope"'
    changed = copy.deepcopy(obj)
    changed["spec"]["serviceName"] = "other"
    with pytest.raises(Invalid) as err:
        admit("statefulsets", changed, old=obj)
    assert "updates to statefulset spec for fields other than" in \
        err.value.causes[0].message

async def test_max_unavailable_updates_several_at_once(harness: ControllerHarness) -> None:
    await harness.start("statefulset")
    await harness.client.create("statefulsets", sts(
        replicas=4, podManagementPolicy="Parallel",
        updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}}))
    await wait_names(harness, ["web-0", "web-1", "web-2", "web-3"])
    for n in ("web-0", "web-1", "web-2", "web-3"):
        await _bind(harness, n)
    body = await harness.client.get("statefulsets", "web", namespace="default")
    body["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    await harness.client.update("statefulsets", body)

    async def terminating():
        return sorted(p["metadata"]["name"] for p in await harness.pods()
                      if p["metadata"].get("deletionTimestamp"))
    assert await harness.eventually(
        lambda: _is_len(terminating(), 2), what="two pods updating")
    await harness.settle()
    assert await terminating() == ["web-2", "web-3"]  # the highest two, no more


async def _is_len(value, n: int) -> bool:
    return len(await value) == n


async def test_retention_when_scaled_delete_removes_the_condemned_claims(
        harness: ControllerHarness) -> None:
    await harness.start("statefulset", "garbagecollector")
    await harness.client.create("statefulsets", sts(
        replicas=2, podManagementPolicy="Parallel",
        persistentVolumeClaimRetentionPolicy={"whenDeleted": "Retain", "whenScaled": "Delete"}))
    await wait_names(harness, ["web-0", "web-1"])
    for n in ("web-0", "web-1"):
        await ready(harness, n)
    body = await harness.client.get("statefulsets", "web", namespace="default")
    body["spec"]["replicas"] = 1
    await harness.client.update("statefulsets", body)

    async def claims():
        items = (await harness.client.list("persistentvolumeclaims", namespace="default")).items
        return sorted(c["metadata"]["name"] for c in items
                      if not c["metadata"].get("deletionTimestamp"))
    await harness.eventually(lambda: _equals(claims(), ["www-web-0"]), what="www-web-1 gone")
    assert await names(harness) == ["web-0"]


async def _equals(value, want) -> bool:
    return (await value) == want
