"""The kubelet's ContainerRunner without root: real processes under ProcessRuntime
(namespaces=False), a recording event sink, and back-off shortened through KubeletOptions.

What a user sees in `kubectl get/describe pod` comes from the ContainerView the runner writes:
restart policies, the CrashLoopBackOff schedule, exit reasons, probe-driven restarts and
readiness, and a stop that runs no restart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from knet.kubelet.context import KubeletOptions, NodeContext
from knet.kubelet.runner import ContainerRunner
from knet.kubelet.status import ContainerView
from knet.runtime.base import PodSandbox
from knet.runtime.process import ProcessRuntime

Obj = dict[str, Any]


class Harness:
    def __init__(self, runtime: ProcessRuntime, sandbox: PodSandbox, *,
                 backoff: float = 0.2) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.changes = 0
        self.sandbox = sandbox

        async def lookup(_r: str, _ns: str, _n: str) -> Obj | None:
            return None

        self.ctx = NodeContext(
            node_name="node-1", node_netns="", host_ip="127.0.0.1",
            pods_root=sandbox.pod_dir.parent, client=None,  # type: ignore[arg-type]
            dataplane=None,  # type: ignore[arg-type]
            runtime=runtime, lookup=lookup, service_env=lambda _ns: {},
            event=lambda _pod, etype, reason, msg: self.events.append((etype, reason, msg)),
            options=KubeletOptions(backoff_initial=backoff, backoff_max=backoff * 4,
                                   backoff_reset=600.0))

    def runner(self, container: Obj, *, restart: str = "Always",
               is_init: bool = False, **spec: Any) -> ContainerRunner:
        pod = {"metadata": {"name": "web-1", "namespace": "default", "uid": "u1"},
               "spec": {"restartPolicy": restart, "containers": [container],
                        "terminationGracePeriodSeconds": 5, **spec}}
        view = ContainerView(name=container["name"], image=container.get("image", ""))

        def changed() -> None:
            self.changes += 1
        return ContainerRunner(self.ctx, pod, container, self.sandbox, pod_ip="127.0.0.1",
                               volumes={}, view=view, changed=changed, is_init=is_init)

    def reasons(self) -> list[str]:
        return [r for _t, r, _m in self.events]


@pytest.fixture
def sandbox(tmp_path: Path) -> PodSandbox:
    return PodSandbox.for_pod("default", "web-1", netns="unused", pod_ip="127.0.0.1",
                              pod_dir=tmp_path / "pod")


@pytest.fixture
async def harness(sandbox: PodSandbox) -> AsyncIterator[Harness]:
    runtime = ProcessRuntime(namespaces=False)
    yield Harness(runtime, sandbox)
    await runtime.remove(sandbox)
    await runtime.close()


def sh(name: str, script: str, **extra: Any) -> Obj:
    return {"name": name, "image": "busybox", "command": ["sh", "-c", script], **extra}


async def until(cond: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_never_runs_once_and_keeps_the_exit(harness: Harness) -> None:
    r = harness.runner(sh("app", "echo hi; exit 3"), restart="Never")
    code = await asyncio.wait_for(r.run(adopt=False), 15)
    assert code == 3
    term = r.view.state["terminated"]
    assert term["exitCode"] == 3 and term["reason"] == "Error"
    assert r.view.restart_count == 0 and r.view.will_restart is False
    assert harness.reasons() == ["Pulled", "Created", "Started"]


async def test_on_failure_restarts_until_success(harness: Harness, tmp_path: Path) -> None:
    marker = tmp_path / "tries"
    script = f"echo x >> {marker}; [ $(wc -l < {marker}) -ge 3 ]"
    r = harness.runner(sh("app", script), restart="OnFailure")
    code = await asyncio.wait_for(r.run(adopt=False), 20)
    assert code == 0 and r.view.restart_count == 2
    assert r.view.state["terminated"]["reason"] == "Completed"
    assert r.view.last_state["terminated"]["exitCode"] == 1   # the previous instance
    assert harness.reasons().count("Started") == 3
    assert harness.reasons().count("BackOff") == 1   # the first restart is immediate


async def test_always_restarts_with_crashloop_backoff_doubling(harness: Harness) -> None:
    r = harness.runner(sh("app", "exit 1"), restart="Always")
    task = asyncio.create_task(r.run(adopt=False))
    waits: list[str] = []

    def seen_backoffs() -> bool:
        state = r.view.state.get("waiting") or {}
        if state.get("reason") == "CrashLoopBackOff" and state["message"] not in waits:
            waits.append(state["message"])
        return len(waits) >= 3
    await until(seen_backoffs)
    r.stopping = True
    task.cancel()
    delays = [float(m.split()[1].rstrip("s")) for m in waits]
    # kubelet: the first restart immediately, then 10 s doubling to the cap (here 0.2 → 0.8)
    assert delays == [0.2, 0.4, 0.8]
    assert "restarting failed container=app pod=web-1_default(u1)" in waits[0]
    assert r.view.restart_count >= 3


async def test_init_container_never_restarts_a_success(harness: Harness) -> None:
    r = harness.runner(sh("init", "exit 0"), restart="Always", is_init=True)
    assert await asyncio.wait_for(r.run(adopt=False), 15) == 0
    assert r.view.restart_count == 0


async def test_failed_init_container_is_retried_unless_never(harness: Harness) -> None:
    r = harness.runner(sh("init", "exit 2"), restart="Never", is_init=True)
    assert await asyncio.wait_for(r.run(adopt=False), 15) == 2
    assert r.view.restart_count == 0


async def test_command_not_found_is_a_start_error(harness: Harness) -> None:
    r = harness.runner({"name": "app", "image": "busybox", "command": ["no-such-binary-x"]},
                       restart="Never")
    code = await asyncio.wait_for(r.run(adopt=False), 15)
    assert code != 0
    assert r.view.last_state["terminated"]["reason"] == "StartError"
    assert "Failed" in harness.reasons()


async def test_unknown_image_waits_with_a_config_reason(harness: Harness) -> None:
    r = harness.runner({"name": "app", "image": "registry.example/nope:1"}, restart="Always")
    task = asyncio.create_task(r.run(adopt=False))
    await until(lambda: "waiting" in r.view.state and
                r.view.state["waiting"]["reason"] != "ContainerCreating")
    r.stopping = True
    task.cancel()
    assert r.view.state["waiting"]["reason"] in ("ErrImagePull", "ImagePullBackOff",
                                                 "InvalidImageName")
    assert r.view.restart_count == 0          # nothing ran: no restart is counted


async def test_exec_readiness_probe_flips_ready(harness: Harness, tmp_path: Path) -> None:
    flag = tmp_path / "ready"
    probe = {"exec": {"command": ["test", "-e", str(flag)]}, "periodSeconds": 1,
             "failureThreshold": 1, "successThreshold": 1}
    r = harness.runner(sh("app", "sleep 30", readinessProbe=probe), restart="Always")
    task = asyncio.create_task(r.run(adopt=False))
    await until(lambda: r.view.running)
    assert r.view.ready is False
    flag.touch()
    await until(lambda: r.view.ready)
    flag.unlink()
    await until(lambda: not r.view.ready)
    await r.stop(grace=1)
    await asyncio.wait_for(task, 10)


async def test_liveness_failure_restarts_the_container(harness: Harness) -> None:
    probe = {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 1}
    r = harness.runner(sh("app", "sleep 30", livenessProbe=probe), restart="Always")
    task = asyncio.create_task(r.run(adopt=False))
    await until(lambda: r.view.restart_count >= 1, timeout=20)
    assert "Killing" in harness.reasons() and "Unhealthy" in harness.reasons()
    assert any("failed liveness probe, will be restarted" in m for _t, _r, m in harness.events)
    await r.stop(grace=1)
    task.cancel()


async def test_stop_runs_no_restart(harness: Harness, tmp_path: Path) -> None:
    armed = tmp_path / "armed"
    r = harness.runner(sh("app", f"trap 'exit 0' TERM; touch {armed}; "
                                 "while :; do sleep 0.1; done"), restart="Always")
    task = asyncio.create_task(r.run(adopt=False))
    await until(lambda: r.view.running and armed.exists())   # the trap is set
    await r.stop(grace=5)
    code = await asyncio.wait_for(task, 10)
    assert code == 0 and r.view.restart_count == 0 and r.view.will_restart is False
    assert "Killing" in harness.reasons()
