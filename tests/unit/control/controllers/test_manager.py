"""The manager: options from the environment, and run_all starting every controller on
shared informers and stopping cleanly."""

from __future__ import annotations

import asyncio

import pytest
from ctlharness import ControllerHarness

from control.api.crdinstall import serve_installed_crds
from control.controllers.manager import ALL_CONTROLLERS, ControllerOptions, run_all


def test_options_from_env() -> None:
    o = ControllerOptions.from_env({"KNET_NODE_MONITOR_GRACE": "3",
                                    "KNET_POD_EVICTION_GRACE": "1.5",
                                    "KNET_CONTROLLERS": "scheduler, replicaset"})
    assert (o.node_monitor_grace, o.pod_eviction_grace) == (3.0, 1.5)
    assert o.controllers == ("scheduler", "replicaset")
    assert ControllerOptions.from_env({}).controllers == ALL_CONTROLLERS
    with pytest.raises(ValueError, match="unknown nope"):
        ControllerOptions.from_env({"KNET_CONTROLLERS": "nope"})
    with pytest.raises(ValueError, match="KNET_POD_EVICTION_GRACE"):
        ControllerOptions.from_env({"KNET_POD_EVICTION_GRACE": "soon"})


async def test_run_all_runs_everything_and_stops(harness: ControllerHarness) -> None:
    crds = await serve_installed_crds(harness.client.objects)   # as the API server does
    try:
        await _run_all_runs_everything_and_stops(harness)
    finally:
        await crds.stop()


async def _run_all_runs_everything_and_stops(harness: ControllerHarness) -> None:
    c = harness.client
    stop = asyncio.Event()
    task = asyncio.create_task(run_all(c, clock=harness.clock, stop=stop,
                                       options=ControllerOptions()))
    await c.create("deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "x"}]}}}})
    await c.create("services", {"apiVersion": "v1", "kind": "Service",
                                "metadata": {"name": "web"},
                                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})

    async def wired():
        pods = await harness.pods()
        slices = (await c.list("endpointslices", namespace="default")).items
        ep = (await c.list("endpoints", namespace="default")).items
        return len(pods) == 2 and slices and ep
    await harness.eventually(wired, what="deployment -> pods, service -> endpoints + slices")
    stop.set()
    await asyncio.wait_for(task, 5)
