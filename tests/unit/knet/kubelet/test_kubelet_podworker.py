"""The kubelet's PodWorker without root: the fake dataplane, ProcessRuntime(namespaces=False)
and the real object layer on a memory store (LocalClient). What `kubectl get pod` shows is
checked on the stored Pod: init containers in order, the phase, container statuses, and a
graceful deletion that finishes in the API.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from control.api.local import LocalClient
from control.api.objects import ObjectService
from control.errors import NotFound
from control.store.memory import MemoryStore
from knet.dataplane.base import NodeSpec
from knet.dataplane.fake import FakeDataplane
from knet.kubelet.context import KubeletOptions, NodeContext
from knet.kubelet.pods import PodWorker
from knet.runtime.process import ProcessRuntime

Obj = dict[str, Any]


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[NodeContext]:
    objects = ObjectService(MemoryStore())
    await objects.start()
    client = LocalClient(objects)
    await client.create("namespaces", {"metadata": {"name": "default"}})
    dp = FakeDataplane(tmp_path / "dp")
    await dp.ensure_host()
    await dp.ensure_node(NodeSpec.default(1))
    runtime = ProcessRuntime(namespaces=False)

    async def lookup(_r: str, _ns: str, _n: str) -> Obj | None:
        return None
    ctx = NodeContext(node_name="node-1", node_netns="", host_ip="172.18.0.2",
                      pods_root=tmp_path / "pods", client=client, dataplane=dp, runtime=runtime,
                      lookup=lookup, service_env=lambda _ns: {}, event=lambda *_a: None,
                      options=KubeletOptions(backoff_initial=0.1, backoff_max=0.4))
    yield ctx
    await runtime.close()


async def make_pod(ctx: NodeContext, spec: Obj) -> Obj:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
           "spec": {"nodeName": "node-1", "automountServiceAccountToken": False, **spec}}
    return await ctx.client.create("pods", pod, namespace="default")


async def stored_until(ctx: NodeContext, cond: Any, timeout: float = 20.0) -> Obj:
    deadline = time.monotonic() + timeout
    while True:
        pod = await ctx.client.get("pods", "p", namespace="default")
        if cond(pod):
            return pod
        assert time.monotonic() < deadline, f"pod status never matched: {pod.get('status')}"
        await asyncio.sleep(0.05)


async def removed_from_api(ctx: NodeContext, timeout: float = 15.0) -> None:
    """Until the pod is gone from the API: the worker finished its deletion (grace 0)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await ctx.client.get("pods", "p", namespace="default")
        except NotFound:
            return
        assert time.monotonic() < deadline, "the pod stayed Terminating: never removed from the API"
        await asyncio.sleep(0.05)


def sh(name: str, script: str) -> Obj:
    return {"name": name, "image": "busybox", "command": ["sh", "-c", script]}


async def test_init_containers_run_in_order_then_the_app(node: NodeContext,
                                                         tmp_path: Path) -> None:
    log = tmp_path / "order"
    pod = await make_pod(node, {
        "restartPolicy": "Never",
        "initContainers": [sh("first", f"echo first >> {log}"),
                           sh("second", f"echo second >> {log}")],
        "containers": [sh("app", f"echo app >> {log}")]})
    worker = PodWorker(node, pod)
    worker.start()
    done = await stored_until(node, lambda p: p.get("status", {}).get("phase") == "Succeeded")
    assert log.read_text().split() == ["first", "second", "app"]
    inits = done["status"]["initContainerStatuses"]
    assert [s["name"] for s in inits] == ["first", "second"]
    assert all(s["state"]["terminated"]["reason"] == "Completed" for s in inits)
    app = done["status"]["containerStatuses"][0]
    assert app["state"]["terminated"]["exitCode"] == 0 and app["restartCount"] == 0
    assert done["status"]["podIP"].startswith("10.244.1.")
    await worker.shutdown()


async def test_a_failed_init_container_fails_a_never_pod(node: NodeContext,
                                                        tmp_path: Path) -> None:
    marker = tmp_path / "app-ran"
    pod = await make_pod(node, {
        "restartPolicy": "Never",
        "initContainers": [sh("init", "exit 4")],
        "containers": [sh("app", f"touch {marker}")]})
    worker = PodWorker(node, pod)
    worker.start()
    failed = await stored_until(node, lambda p: p.get("status", {}).get("phase") == "Failed")
    init = failed["status"]["initContainerStatuses"][0]
    assert init["state"]["terminated"]["exitCode"] == 4
    app = failed["status"]["containerStatuses"][0]
    assert app["state"] == {"waiting": {"reason": "PodInitializing"}}
    await asyncio.sleep(0.3)
    assert not marker.exists()          # the app container never started
    await worker.shutdown()


async def test_deletion_stops_gracefully_and_finishes_in_the_api(node: NodeContext,
                                                               tmp_path: Path) -> None:
    said = tmp_path / "said"
    pod = await make_pod(node, {
        "terminationGracePeriodSeconds": 10,
        "containers": [sh("app", f"trap 'echo bye > {said}; exit 0' TERM; "
                                 "while :; do sleep 0.1; done")]})
    worker = PodWorker(node, pod)
    worker.start()
    running = await stored_until(node, lambda p: p.get("status", {}).get("phase") == "Running")
    assert running["status"]["containerStatuses"][0]["ready"] is True
    await node.client.delete("pods", "p", namespace="default")
    worker.update(await node.client.get("pods", "p", namespace="default"))
    await removed_from_api(node)
    assert said.read_text().strip() == "bye"        # SIGTERM first, within the grace
    assert worker.done
    assert not (tmp_path / "pods").exists() or not any((tmp_path / "pods").iterdir())


async def test_a_pod_waits_for_its_claim_to_be_bound(node: NodeContext, tmp_path: Path) -> None:
    objs: dict[tuple[str, str, str], Obj] = {}
    events: list[tuple[str, str]] = []

    async def lookup(resource: str, namespace: str, name: str) -> Obj | None:
        return objs.get((resource, namespace, name))
    node.lookup = lookup
    node.event = lambda _o, _t, reason, message: events.append((reason, message))
    data = tmp_path / "volumes" / "pvc-1"
    pod = await make_pod(node, {
        "restartPolicy": "Never",
        "volumes": [{"name": "www", "persistentVolumeClaim": {"claimName": "www-p"}}],
        "containers": [sh("app", "true")]})
    worker = PodWorker(node, pod)
    worker.start()
    await asyncio.sleep(0.6)
    assert ("FailedMount", ('pod default/p: volume \'www\': persistentvolumeclaim "www-p" '
                            "not found")) in events
    assert not data.exists()
    objs[("persistentvolumeclaims", "default", "www-p")] = {
        "spec": {"volumeName": "pvc-1"}, "status": {"phase": "Bound"}}
    objs[("persistentvolumes", "", "pvc-1")] = {"spec": {"hostPath": {
        "path": str(data), "type": "DirectoryOrCreate"}}}
    await stored_until(node, lambda p: p.get("status", {}).get("phase") == "Succeeded")
    assert data.is_dir()                 # made on first use, outside the pod directory
    await worker.shutdown()


async def test_a_status_answer_older_than_the_deletion_never_hides_it(node: NodeContext) -> None:
    """The race that left pods Terminating forever: the answer to a status patch (the object
    before the deletion) arrives after the watch delivered the deletion. The worker must keep
    the newer object and tear the pod down."""
    pod = await make_pod(node, {"terminationGracePeriodSeconds": 1,
                                "containers": [sh("app", "while :; do sleep 0.1; done")]})
    worker = PodWorker(node, pod)
    worker.start()
    await stored_until(node, lambda p: p.get("status", {}).get("phase") == "Running")
    real_patch = node.client.patch
    held, deletion_seen = asyncio.Event(), asyncio.Event()

    async def slow_patch(*args: Any, **kw: Any) -> Obj:
        answer = await real_patch(*args, **kw)       # stored now, before the deletion
        held.set()
        await deletion_seen.wait()                   # ... but answered after it
        return answer

    node.client.patch = slow_patch  # type: ignore[method-assign]
    worker._mark()                   # a status change: one patch goes out
    await asyncio.wait_for(held.wait(), 5)
    await node.client.delete("pods", "p", namespace="default")
    worker.update(await node.client.get("pods", "p", namespace="default"))
    deletion_seen.set()
    node.client.patch = real_patch  # type: ignore[method-assign]
    await removed_from_api(node)
    assert worker.done
