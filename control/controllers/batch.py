"""Building the batch/v1 controllers (Job and CronJob) for the controller manager: kept apart
from manager.py so that the manager only calls `build_batch`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from control.clientbase import Client
from control.clock import Clock
from control.controllers.events import EventRecorder

if TYPE_CHECKING:
    from control.controllers.manager import ControllerOptions, InformerFactory, Runnable

__all__ = ["build_batch"]


def build_batch(client: Client, *, clock: Clock, informers: InformerFactory,
                options: ControllerOptions,
                recorder: Callable[[str], EventRecorder]) -> list[Runnable]:
    from control.controllers.cronjob import CronJobController
    from control.controllers.job import JobController
    from control.controllers.job_policy import Backoff

    chosen = set(options.controllers)
    out: list[Runnable] = []
    if "job" in chosen:
        out.append(JobController(client, clock=clock, recorder=recorder("job-controller"),
                                 jobs=informers.get("jobs"), pods=informers.get("pods"),
                                 backoff=Backoff(base=options.job_backoff),
                                 workers=options.workers))
    if "cronjob" in chosen:
        out.append(CronJobController(client, clock=clock,
                                     recorder=recorder("cronjob-controller"),
                                     cronjobs=informers.get("cronjobs"),
                                     jobs=informers.get("jobs")))
    return out
