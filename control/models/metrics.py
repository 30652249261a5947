"""Resource usage as the metrics API (metrics.k8s.io/v1beta1) carries it: per-container CPU
rate and memory working set over a window, and the `MetricsSource` seam through which the
HPA controller reads pods' usage (served by control.api.metricsapi in the API process; a fake
in the unit tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["ContainerUsage", "MetricsSource", "PodUsage"]


@dataclass(frozen=True)
class ContainerUsage:
    name: str
    cpu_nanocores: float          # the rate over the window
    memory_bytes: int             # working set at the end of the window


@dataclass(frozen=True)
class PodUsage:
    namespace: str
    name: str
    timestamp: float              # end of the window, seconds since the epoch
    window: float                 # seconds
    containers: tuple[ContainerUsage, ...] = field(default=())

    @property
    def cpu_millis(self) -> float:
        return sum(c.cpu_nanocores for c in self.containers) / 1e6

    @property
    def memory(self) -> int:
        return sum(c.memory_bytes for c in self.containers)


class MetricsSource(Protocol):
    async def pod_usage(self, namespace: str) -> dict[str, PodUsage]:
        """The latest usage of the pods in `namespace` that have one, by pod name."""
        ...
