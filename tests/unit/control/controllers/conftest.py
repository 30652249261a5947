"""Fixtures of the controller tests, defined in ctlharness.py (shared with
tests/unit/control/test_scheduler.py): the real object layer on a MemoryStore behind a
LocalClient, a FakeClock, and a `ControllerHarness`."""

from ctlharness import client, clock, harness, objects  # noqa: F401
