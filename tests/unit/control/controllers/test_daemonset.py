"""DaemonSet controller on the real object layer with a fake clock: one pod per eligible node
(nodeSelector, affinity, taints and the daemon tolerations), pods pinned by matchFields and
bound by the scheduler, nodes joining and leaving, label changes, RollingUpdate and OnDelete,
ControllerRevisions and status."""

from __future__ import annotations

import itertools

from ctlharness import ControllerHarness
from nodefixtures import add_node

from control.controllers.daemonset_logic import DAEMON_TOLERATIONS


def ds(name: str = "fluentd", **spec_extra) -> dict:
    labels = {"name": name}
    tmpl_spec = {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}
    tmpl_spec.update(spec_extra.pop("pod", {}))
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": tmpl_spec},
                     **spec_extra}}


async def _pods(h: ControllerHarness, selector: str = "name=fluentd") -> list[dict]:
    return [p for p in await h.pods(selector=selector) if not p["metadata"].get("deletionTimestamp")]


async def _nodes_of(h: ControllerHarness, n: int, selector: str = "name=fluentd") -> dict:
    async def check():
        pods = await _pods(h, selector)
        by = {p["spec"].get("nodeName"): p for p in pods}
        return by if len(pods) == n and None not in by and len(by) == n else None
    return await h.eventually(check, what=f"{n} bound daemon pods")


async def _ready_all(h: ControllerHarness, selector: str = "name=fluentd") -> None:
    for p in await _pods(h, selector):
        if not any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in (p.get("status") or {}).get("conditions") or []):
            await h.mark_pod(p)


async def test_one_pod_per_node_pinned_and_bound(harness: ControllerHarness) -> None:
    for n in ("node-1", "node-2"):
        await add_node(harness.client, harness.clock, n)
    await harness.start("daemonset", "scheduler")
    await harness.client.create("daemonsets", ds())
    by = await _nodes_of(harness, 2)
    assert set(by) == {"node-1", "node-2"}
    pod = by["node-1"]
    terms = pod["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchFields": [{"key": "metadata.name", "operator": "In",
                                       "values": ["node-1"]}]}]
    for tol in DAEMON_TOLERATIONS:
        assert tol in pod["spec"]["tolerations"]
    labels = pod["metadata"]["labels"]
    assert labels["controller-revision-hash"] and labels["pod-template-generation"] == "1"
    revs = (await harness.client.list("controllerrevisions", namespace="default")).items
    assert len(revs) == 1 and revs[0]["revision"] == 1
    assert revs[0]["metadata"]["name"] == f"fluentd-{labels['controller-revision-hash']}"
    await _ready_all(harness)

    async def status():
        st = (await harness.client.get("daemonsets", "fluentd", namespace="default")).get(
            "status") or {}
        return st if st.get("numberReady") == 2 else None
    st = await harness.eventually(status, what="numberReady 2")
    assert st["desiredNumberScheduled"] == 2 and st["currentNumberScheduled"] == 2
    assert st["updatedNumberScheduled"] == 2 and st["numberAvailable"] == 2
    assert st["numberMisscheduled"] == 0 and st["observedGeneration"] == 1


async def test_node_selector_taints_and_label_changes(harness: ControllerHarness) -> None:
    await add_node(harness.client, harness.clock, "node-1", labels={"disk": "ssd"})
    await add_node(harness.client, harness.clock, "node-2")
    await add_node(harness.client, harness.clock, "master", labels={"disk": "ssd"},
                   taints=[{"key": "node-role.kubernetes.io/control-plane",
                            "effect": "NoSchedule"}])
    await harness.start("daemonset", "scheduler")
    await harness.client.create("daemonsets", ds(pod={"nodeSelector": {"disk": "ssd"}}))
    by = await _nodes_of(harness, 1)
    assert set(by) == {"node-1"}         # node-2 lacks the label, master's taint is untolerated
    await harness.client.patch("nodes", "node-2", {"metadata": {"labels": {"disk": "ssd"}}})
    by = await _nodes_of(harness, 2)
    assert set(by) == {"node-1", "node-2"}
    await harness.client.patch("nodes", "node-1", {"metadata": {"labels": {"disk": None}}})
    by = await _nodes_of(harness, 1)
    assert set(by) == {"node-2"}


async def test_tolerated_taint_and_cordoned_node_get_pods(harness: ControllerHarness) -> None:
    await add_node(harness.client, harness.clock, "master", taints=[
        {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}])
    await add_node(harness.client, harness.clock, "node-1")
    await harness.client.patch("nodes", "node-1", {"spec": {"unschedulable": True}})
    await harness.start("daemonset", "scheduler")
    await harness.client.create("daemonsets", ds(pod={"tolerations": [
        {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists",
         "effect": "NoSchedule"}]}))
    by = await _nodes_of(harness, 2)
    assert set(by) == {"master", "node-1"}


async def test_nodes_joining_and_leaving(harness: ControllerHarness) -> None:
    await add_node(harness.client, harness.clock, "node-1")
    await harness.start("daemonset", "scheduler", "nodelifecycle")
    await harness.client.create("daemonsets", ds())
    await _nodes_of(harness, 1)
    await add_node(harness.client, harness.clock, "node-3")
    by = await _nodes_of(harness, 2)
    assert set(by) == {"node-1", "node-3"}
    await harness.client.delete("nodes", "node-3")

    async def gone():
        pods = await harness.pods(selector="name=fluentd")
        return all(p["spec"].get("nodeName") == "node-1" for p in pods) and len(pods) == 1
    for _ in range(20):
        await harness.clock.advance(1)
        await harness.settle(2)
    await harness.eventually(gone, timeout=10, what="the pod of node-3 garbage collected")


async def _roll(harness: ControllerHarness, strategy: dict, nodes: int) -> list[int]:
    """Update the image; mark new pods ready as they come; record how many old pods were
    alive (not terminating) at each step. Returns that trace."""
    for i in range(1, nodes + 1):
        await add_node(harness.client, harness.clock, f"node-{i}")
    await harness.start("daemonset", "scheduler")
    await harness.client.create("daemonsets", ds(updateStrategy=strategy))
    await _nodes_of(harness, nodes)
    await _ready_all(harness)
    cur = await harness.client.get("daemonsets", "fluentd", namespace="default")
    cur["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:2"
    await harness.client.update("daemonsets", cur)
    trace = []
    for _ in range(400):
        pods = await harness.pods(selector="name=fluentd")
        images = [p["spec"]["containers"][0]["image"] for p in pods
                  if not p["metadata"].get("deletionTimestamp")]
        trace.append(len([i for i in images if i == "busybox"]))
        # the kubelet finishes terminating pods, and the new ones become ready
        for p in pods:
            if p["metadata"].get("deletionTimestamp"):
                await harness.client.delete("pods", p["metadata"]["name"], namespace="default",
                                            grace_period=0)
        await _ready_all(harness)
        st = (await harness.client.get("daemonsets", "fluentd", namespace="default"))["status"]
        if (st.get("updatedNumberScheduled") == nodes and st.get("numberAvailable") == nodes
                and len(images) == nodes and "busybox" not in images):
            return trace
        await harness.settle(3)
    raise AssertionError(f"rollout did not finish: {trace[-10:]} {st}")


async def test_rolling_update_max_unavailable_one(harness: ControllerHarness) -> None:
    trace = await _roll(harness, {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxUnavailable": 1}}, 3)
    assert trace[0] >= 2 and min(trace) == 0
    # never more than one node without an available pod: old pods go one at a time
    assert all(a - b <= 1 for a, b in itertools.pairwise(trace))
    revs = (await harness.client.list("controllerrevisions", namespace="default")).items
    assert sorted(r["revision"] for r in revs) == [1, 2]
    ds_ = await harness.client.get("daemonsets", "fluentd", namespace="default")
    assert ds_["status"]["observedGeneration"] == 2


async def test_rolling_update_max_surge(harness: ControllerHarness) -> None:
    await _roll(harness, {"type": "RollingUpdate",
                          "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}, 2)


async def test_on_delete_replaces_only_deleted_pods(harness: ControllerHarness) -> None:
    await add_node(harness.client, harness.clock, "node-1")
    await add_node(harness.client, harness.clock, "node-2")
    await harness.start("daemonset", "scheduler")
    await harness.client.create("daemonsets", ds(updateStrategy={"type": "OnDelete"}))
    by = await _nodes_of(harness, 2)
    await _ready_all(harness)
    cur = await harness.client.get("daemonsets", "fluentd", namespace="default")
    cur["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:2"
    await harness.client.update("daemonsets", cur)
    await harness.settle(30)
    images = {p["spec"]["nodeName"]: p["spec"]["containers"][0]["image"]
              for p in await _pods(harness)}
    assert images == {"node-1": "busybox", "node-2": "busybox"}
    await harness.client.delete("pods", by["node-2"]["metadata"]["name"], namespace="default",
                                grace_period=0)

    async def replaced():
        imgs = {p["spec"].get("nodeName"): p["spec"]["containers"][0]["image"]
                for p in await _pods(harness)}
        return imgs if imgs == {"node-1": "busybox", "node-2": "busybox:2"} else None
    await harness.eventually(replaced, what="node-2 replaced with the new template")


def test_bad_daemonsets_are_refused_with_kube_apiservers_words() -> None:
    import pytest

    from control.errors import Invalid
    from control.models.validation import admit

    def refused(**spec) -> str:
        with pytest.raises(Invalid) as err:
            admit("daemonsets", ds(**spec))
        return err.value.status()["message"]

    assert "spec.updateStrategy.type: Unsupported value: \"Bogus\": supported values: " \
        "\"OnDelete\", \"RollingUpdate\"" in refused(updateStrategy={"type": "Bogus"})
    assert "spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 " \
        "when `maxSurge` is 0" in refused(updateStrategy={
            "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0}})
    assert "spec.template.spec.activeDeadlineSeconds: Forbidden" in refused(
        pod={"activeDeadlineSeconds": 5})
    out, warnings = admit("daemonsets", ds())
    assert out["spec"]["updateStrategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert out["spec"]["revisionHistoryLimit"] == 10 and warnings == []


async def test_failed_pods_are_replaced_with_back_off(harness: ControllerHarness) -> None:
    await add_node(harness.client, harness.clock, "node-1")
    await harness.start("daemonset", "scheduler")
    await harness.client.create("daemonsets", ds())
    first = (await _nodes_of(harness, 1))["node-1"]
    await harness.mark_pod(first, ready=False, phase="Failed")

    async def replaced(old: str):
        pods = await _pods(harness)
        return pods[0] if len(pods) == 1 and pods[0]["metadata"]["name"] != old and \
            pods[0]["spec"].get("nodeName") else None
    second = await harness.eventually(lambda: replaced(first["metadata"]["name"]),
                                      what="the failed pod replaced")
    events = (await harness.client.list("events", namespace="default")).items
    assert any(e["reason"] == "FailedDaemonPod" for e in events)
    await harness.mark_pod(second, ready=False, phase="Failed")
    await harness.settle(30)
    assert [p["metadata"]["name"] for p in await _pods(harness)] == \
        [second["metadata"]["name"]]          # in back-off: 1 s, then 2 s, ...
    await harness.clock.advance(3)
    await harness.eventually(lambda: replaced(second["metadata"]["name"]),
                             what="the second failed pod replaced after its back-off")
