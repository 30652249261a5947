"""How the controller manager builds this branch's controllers (DaemonSet, and the disruption
controller behind PodDisruptionBudgets) on its shared informers; kept apart so manager.py
changes by one call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from control.clientbase import Client
from control.clock import Clock
from control.controllers.base import Controller
from control.controllers.events import EventRecorder
from control.informer import Informer

__all__ = ["build_daemon_controllers"]


class _Informers(Protocol):
    def get(self, resource: str, *, namespace: str | None = None) -> Informer: ...


def build_daemon_controllers(client: Client, *, clock: Clock, informers: _Informers,
                             chosen: set[str],
                             recorder: Callable[[str], EventRecorder]) -> list[Controller]:
    out: list[Controller] = []
    pods = informers.get("pods")
    if "daemonset" in chosen:
        from control.controllers.daemonset import DaemonSetController
        out.append(DaemonSetController(
            client, clock=clock, recorder=recorder("daemonset-controller"),
            daemonsets=informers.get("daemonsets"), pods=pods, nodes=informers.get("nodes"),
            revisions=informers.get("controllerrevisions")))
    if "disruption" in chosen:
        from control.controllers.disruption import DisruptionController
        out.append(DisruptionController(
            client, clock=clock, recorder=recorder("controllermanager"),
            pdbs=informers.get("poddisruptionbudgets"), pods=pods))
    return out
