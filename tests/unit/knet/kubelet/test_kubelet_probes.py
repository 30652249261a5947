"""The probe loop's thresholds: a startup probe allows failureThreshold failures in a row
(failureThreshold x periodSeconds) before the container is failed (it used to be failed on
the first one); readiness reports its first failure without failing; liveness fails after
failureThreshold; a success resets the count."""

from __future__ import annotations

import asyncio

from knet.kubelet.probes import Prober


class Script:
    """A check that answers from a script (True = pass) and then keeps its last answer; it
    records, at each call, how many failures the Prober had already reported."""

    def __init__(self, answers: list[bool]) -> None:
        self.answers = answers
        self.calls = 0
        self.changes: list[tuple[int, str, bool]] = []
        self.reports: list[tuple[int, str]] = []
        self.done = asyncio.Event()

    async def check(self) -> tuple[bool, str]:
        ok = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        if self.calls >= len(self.answers) + 2:
            self.done.set()
        return ok, "" if ok else f"failure {self.calls}"

    def on_change(self, kind: str, ok: bool, message: str) -> None:
        self.changes.append((self.calls, kind, ok))

    def on_report(self, kind: str, message: str) -> None:
        self.reports.append((self.calls, message))


async def run(kind: str, answers: list[bool], *, initial: bool, threshold: int = 3) -> Script:
    script = Script(answers)
    probe = {"periodSeconds": 0.1, "failureThreshold": threshold, "successThreshold": 1}
    prober = Prober(kind, probe, script.check, on_change=script.on_change, initial=initial,
                    on_report=script.on_report)
    original = prober.period
    prober.period = 0.001                       # the loop, not the clock, is under test
    assert original == 0.1
    prober.start()
    try:
        await asyncio.wait_for(script.done.wait(), 5)
    finally:
        await prober.stop()
    return script


async def test_startup_probe_fails_only_after_failure_threshold() -> None:
    script = await run("startup", [False] * 5, initial=False, threshold=5)
    assert script.changes == [(5, "startup", False)]     # not at the first failure
    assert script.reports == [(1, "failure 1")]


async def test_startup_probe_passing_before_threshold_never_fails() -> None:
    script = await run("startup", [False, False, True], initial=False, threshold=3)
    assert script.changes == [(3, "startup", True)]


async def test_liveness_fails_after_threshold_and_a_success_resets_the_count() -> None:
    script = await run("liveness", [False, False, True, False, False, False], initial=True)
    assert script.changes == [(6, "liveness", False)]
    assert script.reports == []


async def test_readiness_reports_then_fails_once() -> None:
    script = await run("readiness", [False] * 4, initial=False)
    assert script.reports == [(1, "failure 1")]
    assert script.changes == [(3, "readiness", False)]
