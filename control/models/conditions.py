"""Status conditions compared as their writers mean them: without `lastTransitionTime`,
the one field two writers of the same condition may differ in (the Gateway API status
controller in control/controllers/gateway.py, every node proxy's route status in
knet/mesh/status.py), so a status is rewritten only when something else changed."""

from __future__ import annotations

from typing import Any

__all__ = ["without_transition_times"]


def without_transition_times(value: Any) -> Any:
    """`value` (a status, a condition list...) with every lastTransitionTime left out."""
    if isinstance(value, dict):
        return {k: without_transition_times(v) for k, v in value.items()
                if k != "lastTransitionTime"}
    if isinstance(value, list):
        return [without_transition_times(v) for v in value]
    return value
