"""postStart hooks and changed container definitions, as the kubelet handles them: the hook
runs before the container counts as running; a failing one is a FailedPostStartHook event
with the kubelet's message, the container killed and restarted by its policy; a new image
(`kubectl set image`) kills the container with "definition changed" and starts the new one
at once, whatever the restart policy."""

from __future__ import annotations

import asyncio
from pathlib import Path

from test_kubelet_runner import Harness, harness, sandbox, sh, until  # noqa: F401


async def test_a_post_start_hook_runs_before_the_container_counts_as_running(
        harness: Harness, tmp_path: Path) -> None:  # noqa: F811
    marker = tmp_path / "hooked"
    r = harness.runner(sh("app", "sleep 30", lifecycle={"postStart": {"exec": {
        "command": ["sh", "-c", f"sleep 0.5; echo hook > {marker}"]}}}))
    task = asyncio.create_task(r.run(adopt=False))
    await until(lambda: r.handle is not None)
    assert "running" not in r.view.state                  # still ContainerCreating
    await until(lambda: "running" in r.view.state)
    assert marker.read_text() == "hook\n"
    assert "FailedPostStartHook" not in harness.reasons()
    r.stopping = True
    await r.stop(grace=1)
    await asyncio.wait_for(task, 10)


async def test_a_failing_post_start_hook_kills_the_container(harness: Harness) -> None:  # noqa: F811
    r = harness.runner(sh("app", "sleep 30", lifecycle={"postStart": {"exec": {
        "command": ["sh", "-c", "echo nope; exit 3"]}}}), restart="Never")
    code = await asyncio.wait_for(r.run(adopt=False), 20)
    assert code != 0 and "terminated" in r.view.state
    failed = [m for _t, reason, m in harness.events if reason == "FailedPostStartHook"]
    assert failed == ['Exec lifecycle hook ([sh -c echo nope; exit 3]) for Container "app" in '
                      'Pod "web-1_default(u1)" failed - error: command \'sh -c echo nope; '
                      'exit 3\' exited with 3: , message: "nope\\n"']
    assert ("Normal", "Killing", "FailedPostStartHook") in harness.events
    assert r.view.restart_count == 0                       # Never: not restarted


async def test_a_changed_image_restarts_the_container_at_once(harness: Harness) -> None:  # noqa: F811
    c = {**sh("app", "sleep 30"), "image": "busybox:1.36"}
    r = harness.runner(c, restart="Never")
    task = asyncio.create_task(r.run(adopt=False))
    await until(lambda: "running" in r.view.state)
    first = r.handle
    r.redefine({**c, "image": "busybox:1.37"})
    await until(lambda: r.handle is not first and "running" in r.view.state)
    assert r.view.restart_count == 1 and r.view.image == "busybox:1.37"
    assert ("Normal", "Killing", "Container app definition changed, will be restarted") \
        in harness.events
    assert "BackOff" not in harness.reasons()
    assert r.view.last_state["terminated"]["exitCode"] != 0
    r.redefine({**c, "image": "busybox:1.37"})             # the same again: nothing happens
    assert r.view.restart_count == 1
    await r.stop(grace=1)
    await asyncio.wait_for(task, 10)
