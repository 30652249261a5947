"""A crashed controller does not stay dead: it is restarted with back-off (1 s doubling to
60 s, reset after a long run), the crash is logged with its traceback and reported as a
Warning Event `ControllerCrashed`; in run_all the rebuilt controller works again and the
others never stopped; the API server's hooks are supervised the same way."""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

import pytest
from ctlharness import ControllerHarness

from control.api.local import LocalClient
from control.clock import FakeClock
from control.controllers.deployment import DeploymentController
from control.controllers.events import EventRecorder
from control.controllers.manager import ControllerOptions, run_all
from control.controllers.supervisor import CRASH_REASON, Backoff, Supervisor
from control.server import _guard


async def _crash_events(client: LocalClient) -> list[dict[str, Any]]:
    return [e for e in (await client.list("events", namespace="kube-system")).items
            if e["reason"] == CRASH_REASON]


async def _until(clock: FakeClock, cond: Any, *, step: float = 0.5, limit: int = 400) -> None:
    """Advance the fake clock in steps until cond() holds."""
    for _ in range(limit):
        if cond():
            return
        await clock.advance(step)
    raise AssertionError("condition never held")


def test_backoff_doubles_from_one_second_to_a_minute() -> None:
    b = Backoff()
    assert [b.delay(n) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]


async def test_crashing_controller_restarted_with_growing_backoff_and_an_event(
        client: LocalClient, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    stop = asyncio.Event()
    sup = Supervisor(clock=clock, stop=stop,
                     recorder=EventRecorder(client, component="kube-controller-manager",
                                            clock=clock))
    attempts: list[float] = []

    async def start() -> None:
        attempts.append(clock.monotonic())
        if len(attempts) <= 3:
            raise RuntimeError(f"boom {len(attempts)}")
        await stop.wait()

    with caplog.at_level(logging.ERROR):
        task = asyncio.create_task(sup.run("deployment", start))
        await _until(clock, lambda: len(attempts) == 4)
    assert sup.delays["deployment"] == [1.0, 2.0, 4.0] and sup.restarts["deployment"] == 3
    # the waits really happened on the clock: 1 s, then 2 s, then 4 s
    assert [b - a for a, b in itertools.pairwise(attempts)] == \
        pytest.approx([1.0, 2.0, 4.0], abs=0.5)
    crash_logs = [r for r in caplog.records if "deployment crashed" in r.getMessage()]
    assert len(crash_logs) == 3 and all(r.exc_info for r in crash_logs)
    assert "RuntimeError: boom 1" in caplog.text and "Traceback" in caplog.text
    events = await _crash_events(client)
    assert len(events) == 3   # the message names each exception
    e = events[0]
    assert e["type"] == "Warning" and e["source"]["component"] == "kube-controller-manager"
    assert e["involvedObject"]["kind"] == "Lease"
    assert e["involvedObject"]["name"] == "kube-controller-manager"
    assert "controller deployment crashed (RuntimeError: boom" in e["message"]
    stop.set()
    await asyncio.wait_for(task, 2)
    assert len(attempts) == 4


async def test_same_crash_repeats_aggregate_and_backoff_resets_after_a_long_run(
        client: LocalClient, clock: FakeClock) -> None:
    stop = asyncio.Event()
    sup = Supervisor(clock=clock, stop=stop, backoff=Backoff(reset_after=100),
                     recorder=EventRecorder(client, component="kube-controller-manager",
                                            clock=clock))
    runs = 0

    async def start() -> None:
        nonlocal runs
        runs += 1
        if runs == 4:            # this one runs long before crashing
            await clock.sleep(150)
        if runs <= 4:
            raise ValueError("same")
        await stop.wait()

    task = asyncio.create_task(sup.run("scheduler", start))
    await _until(clock, lambda: runs == 5, step=1.0)
    assert sup.delays["scheduler"] == [1.0, 2.0, 4.0, 1.0]
    (event,) = await _crash_events(client)
    assert event["count"] == 4
    stop.set()
    await asyncio.wait_for(task, 2)


async def test_stop_during_backoff_ends_at_once(client: LocalClient, clock: FakeClock) -> None:
    stop = asyncio.Event()
    sup = Supervisor(clock=clock, stop=stop)

    async def start() -> None:
        raise RuntimeError("always")

    task = asyncio.create_task(sup.run("x", start))
    await _until(clock, lambda: sup.restarts.get("x", 0) >= 2)
    stop.set()
    await asyncio.wait_for(task, 1)


async def test_run_all_rebuilds_a_crashed_controller_and_it_works_again(
        harness: ControllerHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    c, clock = harness.client, harness.clock
    real_run = DeploymentController.run
    crashed: list[DeploymentController] = []

    async def run_once_crashing(self: DeploymentController, stop: asyncio.Event) -> None:
        if not crashed:
            crashed.append(self)
            raise RuntimeError("deployment controller bug")
        await real_run(self, stop)

    monkeypatch.setattr(DeploymentController, "run", run_once_crashing)
    stop = asyncio.Event()
    task = asyncio.create_task(run_all(c, clock=clock, stop=stop, options=ControllerOptions(
        controllers=("deployment", "replicaset"))))
    await harness.eventually(lambda: crashed, what="the first deployment controller crashed")
    await harness.eventually(_crash_events_of(c), what="ControllerCrashed event")
    await clock.advance(1.5)    # the 1 s back-off
    await c.create("deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "x"}]}}}})
    await harness.eventually(lambda: _pods_count(c, 2), what="deployment -> rs -> 2 pods")
    # the crashed instance's handlers were detached: it saw nothing of the new deployment
    assert len(crashed[0].queue) == 0
    stop.set()
    await asyncio.wait_for(task, 5)


def _crash_events_of(c: LocalClient) -> Any:
    async def check() -> list[dict[str, Any]]:
        return await _crash_events(c)
    return check


async def _pods_count(c: LocalClient, n: int) -> bool:
    return len((await c.list("pods", namespace="default")).items) == n


async def test_server_hook_that_crashes_is_run_again(client: LocalClient,
                                                     clock: FakeClock) -> None:
    stop = asyncio.Event()
    calls: list[int] = []

    async def hook(_client: LocalClient, *, clock: FakeClock, stop: asyncio.Event) -> None:
        calls.append(1)
        if len(calls) < 3:
            raise OSError("informers could not sync")
        await stop.wait()

    task = asyncio.create_task(_guard("test:hook", hook, client, stop, clock=clock))
    await _until(clock, lambda: len(calls) == 3)
    assert next(e["message"] for e in await _crash_events(client)).startswith(
        "controller test:hook crashed (OSError: informers could not sync)")
    stop.set()
    await asyncio.wait_for(task, 2)
