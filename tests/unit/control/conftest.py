"""Fixtures shared by the controller, scheduler, informer tests (defined in
controllers/ctlharness.py): clock (FakeClock), objects (the object layer on a MemoryStore),
client (LocalClient), harness (ControllerHarness). Subdirectories may override them (api/)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "controllers"))

from ctlharness import client, clock, harness, objects  # noqa: F401
