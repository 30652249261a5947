"""The event recorder (aggregation into count/lastTimestamp, involvedObject, source) and the
work queue (dedup, one worker per key, requeue while processing, back-off on the fake clock)."""

from __future__ import annotations

import asyncio

from control.api.local import LocalClient
from control.clock import FakeClock
from control.controllers.events import EventRecorder
from control.controllers.queue import ShutDown, WorkQueue


async def test_repeated_event_is_aggregated(client: LocalClient, clock: FakeClock) -> None:
    rec = EventRecorder(client, component="test-controller", clock=clock, host="cp")
    pod = await client.create("pods", {"apiVersion": "v1", "kind": "Pod",
                                       "metadata": {"name": "p"},
                                       "spec": {"containers": [{"name": "c", "image": "x"}]}})
    await rec.record(pod, "Warning", "BackOff", "restarting")
    await clock.advance(5)
    await rec.record(pod, "Warning", "BackOff", "restarting")
    await rec.record(pod, "Normal", "Pulled", "pulled")
    events = (await client.list("events", namespace="default")).items
    assert len(events) == 2
    back = next(e for e in events if e["reason"] == "BackOff")
    assert back["count"] == 2 and back["type"] == "Warning"
    assert back["firstTimestamp"] == "2026-01-01T00:00:00Z"
    assert back["lastTimestamp"] == "2026-01-01T00:00:05Z"
    assert back["involvedObject"] == {"kind": "Pod", "name": "p", "apiVersion": "v1",
                                      "namespace": "default", "uid": pod["metadata"]["uid"],
                                      "resourceVersion": pod["metadata"]["resourceVersion"]}
    assert back["source"] == {"component": "test-controller", "host": "cp"}
    assert back["metadata"]["name"].startswith("p.")


async def test_cluster_scoped_objects_get_events_in_default(client: LocalClient,
                                                           clock: FakeClock) -> None:
    rec = EventRecorder(client, component="node-controller", clock=clock)
    node = await client.create("nodes", {"metadata": {"name": "node-1"}})
    await rec.record(node, "Normal", "NodeNotReady", "Node node-1 status is now: NodeNotReady")
    [ev] = (await client.list("events", namespace="default")).items
    assert ev["involvedObject"]["kind"] == "Node" and "namespace" not in ev["involvedObject"]


async def test_recording_never_raises(client: LocalClient, clock: FakeClock) -> None:
    rec = EventRecorder(client, component="x", clock=clock)
    ghost = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "g", "namespace": "nope"}}
    await rec.record(ghost, "Normal", "R", "m")       # namespace does not exist: logged only


async def test_queue_dedups_and_serialises_a_key() -> None:
    q = WorkQueue(clock=FakeClock())
    q.add("a")
    q.add("a")
    q.add("b")
    assert len(q) == 2
    first = await q.get()
    assert first == "a"
    q.add("a")                                       # while "a" is processed
    second = await q.get()
    assert second == "b"                             # "a" is not handed out twice
    q.done("b")
    assert len(q) == 0
    q.done("a")                                      # now it comes back, once
    assert await q.get() == "a" and len(q) == 0


async def test_rate_limited_requeue_backs_off_on_the_clock() -> None:
    clock = FakeClock()
    q = WorkQueue(clock=clock, base_delay=1.0, max_delay=4.0)
    delays = [q.add_rate_limited("k") for _ in range(4)]
    assert delays == [1.0, 2.0, 4.0, 4.0]
    await asyncio.sleep(0)
    assert len(q) == 0
    await clock.advance(0.9)
    assert len(q) == 0
    await clock.advance(0.2)
    assert len(q) == 1 and await q.get() == "k"
    q.done("k")
    q.forget("k")
    assert q.add_rate_limited("k") == 1.0


async def test_shutdown_releases_waiting_workers() -> None:
    q = WorkQueue(clock=FakeClock())
    waiter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.shutdown()
    try:
        await asyncio.wait_for(waiter, 1)
    except ShutDown:
        pass
    else:
        raise AssertionError("get() should raise ShutDown")
