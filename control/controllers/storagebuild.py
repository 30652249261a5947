"""Builds the StatefulSet and storage controllers for the controller manager (manager.py
calls `build_storage` once; kept here so the manager's own list stays short)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from control.clientbase import Client
from control.clock import Clock
from control.controllers.events import EventRecorder

if TYPE_CHECKING:
    from control.controllers.manager import InformerFactory, Runnable

__all__ = ["build_storage"]


def build_storage(client: Client, *, clock: Clock, informers: InformerFactory,
                  chosen: set[str], recorder: Callable[[str], EventRecorder],
                  workers: int) -> list[Runnable]:
    from control.controllers.persistentvolume import PersistentVolumeController
    from control.controllers.pvcprotection import ProtectionController
    from control.controllers.statefulset import StatefulSetController

    out: list[Runnable] = []
    pods, claims = informers.get("pods"), informers.get("persistentvolumeclaims")
    if "statefulset" in chosen:
        out.append(StatefulSetController(
            client, clock=clock, recorder=recorder("statefulset-controller"),
            statefulsets=informers.get("statefulsets"), pods=pods,
            revisions=informers.get("controllerrevisions"), claims=claims, workers=workers))
    if "persistentvolume-binder" in chosen:
        out.append(PersistentVolumeController(
            client, clock=clock, recorder=recorder("persistentvolume-controller"),
            claims=claims, volumes=informers.get("persistentvolumes"),
            classes=informers.get("storageclasses"), nodes=informers.get("nodes"), pods=pods,
            workers=workers,
            provisioner=recorder("rancher.io/local-path_local-path-provisioner")))
    if "pvc-protection" in chosen:
        out.append(ProtectionController(client, clock=clock, claims=claims,
                                        volumes=informers.get("persistentvolumes"), pods=pods))
    return out
