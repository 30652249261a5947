"""Helpers for the Job and CronJob controller tests: a Job manifest, and what a kubelet does
when a pod's container exits (phase Succeeded/Failed with the exit code and finish time)."""

from __future__ import annotations

import copy
from typing import Any

from ctlharness import ControllerHarness

from control.clock import rfc3339


def job(name: str = "pi", *, restart: str = "Never", **spec: Any) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"template": {"spec": {
                "restartPolicy": restart,
                "containers": [{"name": "main", "image": "busybox",
                                "command": ["sh", "-c", "true"]}]}}, **spec}}


async def finish(h: ControllerHarness, pod: dict, code: int = 0,
                 conditions: list[dict] | None = None) -> dict:
    md = pod["metadata"]
    cur = await h.client.get("pods", md["name"], namespace=md["namespace"])
    status = copy.deepcopy(cur.get("status") or {})
    now = rfc3339(h.clock.now())
    status["phase"] = "Succeeded" if code == 0 else "Failed"
    status["containerStatuses"] = [{
        "name": "main", "ready": False, "restartCount": 0, "image": "busybox",
        "state": {"terminated": {"exitCode": code, "finishedAt": now, "startedAt": now,
                                 "reason": "Completed" if code == 0 else "Error"}}}]
    if conditions:
        status["conditions"] = [*(status.get("conditions") or []), *conditions]
    cur["status"] = status
    return await h.client.update("pods", cur, subresource="status")


async def job_pods(h: ControllerHarness, name: str = "pi", *, phase: str | None = None,
                   live: bool = True) -> list[dict]:
    pods = await h.pods(selector=f"batch.kubernetes.io/job-name={name}")
    if live:
        pods = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    if phase is not None:
        pods = [p for p in pods if (p.get("status") or {}).get("phase", "Pending") == phase]
    return pods


async def get_job(h: ControllerHarness, name: str = "pi") -> dict:
    return await h.client.get("jobs", name, namespace="default")


def cond(job: dict, ctype: str) -> dict | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c["type"] == ctype and c["status"] == "True":
            return c
    return None


async def events(h: ControllerHarness, reason: str) -> list[dict]:
    return [e for e in (await h.client.list("events", namespace="default")).items
            if e.get("reason") == reason]
