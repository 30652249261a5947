"""Ephemeral containers on the kubelet side, without root (ProcessRuntime(namespaces=False)):
added to a running pod through `pods/ephemeralcontainers`, started in it, never restarted,
reported in `status.ephemeralContainerStatuses`, reachable by the kubelet's logs; the pod's
phase and Ready ignore them."""

from __future__ import annotations

from pathlib import Path

from test_kubelet_podworker import make_pod, node, sh, stored_until  # noqa: F401

from knet.kubelet.context import NodeContext
from knet.kubelet.pods import PodWorker


async def add_ephemeral(ctx: NodeContext, worker: PodWorker, container: dict) -> None:
    await ctx.client.patch("pods", "p", {"spec": {"ephemeralContainers": [container]}},
                           patch_type="strategic", namespace="default",
                           subresource="ephemeralcontainers")
    worker.update(await ctx.client.get("pods", "p", namespace="default"))


async def test_an_ephemeral_container_runs_once_in_the_running_pod(node: NodeContext,  # noqa: F811
                                                                  tmp_path: Path) -> None:
    pod = await make_pod(node, {"containers": [sh("app", "sleep 30")]})
    worker = PodWorker(node, pod)
    worker.start()
    await stored_until(node, lambda p: p.get("status", {}).get("phase") == "Running")
    await add_ephemeral(node, worker, {**sh("debugger", "echo debugging $HOSTNAME; exit 3"),
                                       "targetContainerName": "app"})

    def ended(p: dict) -> bool:
        st = (p.get("status") or {}).get("ephemeralContainerStatuses") or []
        return bool(st) and "terminated" in st[0]["state"]
    done = await stored_until(node, ended)
    st = done["status"]["ephemeralContainerStatuses"][0]
    assert st["name"] == "debugger" and st["state"]["terminated"]["exitCode"] == 3
    assert st["restartCount"] == 0 and st["ready"] is False
    assert done["status"]["phase"] == "Running"
    ready = {c["type"]: c["status"] for c in done["status"]["conditions"]}
    assert ready["Ready"] == "True"                       # not counted for readiness
    runner = worker.find_runner("debugger")
    assert runner is not None and runner.handle is not None
    text = b"".join([c async for c in node.runtime.read_logs(runner.handle, follow=False)])
    assert text == b"debugging p\n"
    # not restarted, and a second update does not run it again
    worker.update(await node.client.get("pods", "p", namespace="default"))
    again = await stored_until(node, ended)
    assert again["status"]["ephemeralContainerStatuses"][0]["restartCount"] == 0
    assert len(worker.ephemeral.runners) == 1
    await worker.shutdown()


async def test_a_patched_image_restarts_that_container(node: NodeContext) -> None:  # noqa: F811
    pod = await make_pod(node, {"containers": [{**sh("app", "sleep 30"), "image": "busybox:1.36"},
                                               sh("side", "sleep 30")]})
    worker = PodWorker(node, pod)
    worker.start()
    await stored_until(node, lambda p: p.get("status", {}).get("phase") == "Running")
    await node.client.patch("pods", "p", {"spec": {"containers": [
        {"name": "app", "image": "busybox:1.37"}]}}, patch_type="strategic", namespace="default")
    worker.update(await node.client.get("pods", "p", namespace="default"))

    def restarted(p: dict) -> bool:
        st = {s["name"]: s for s in (p.get("status") or {}).get("containerStatuses") or []}
        return st["app"]["restartCount"] == 1 and "running" in st["app"]["state"]
    done = await stored_until(node, restarted)
    st = {s["name"]: s for s in done["status"]["containerStatuses"]}
    assert st["app"]["image"] == "busybox:1.37"
    assert st["side"]["restartCount"] == 0                 # the other one untouched
    await worker.shutdown()
