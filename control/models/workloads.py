"""Workload controllers' objects: ReplicaSet, ReplicationController, Deployment (typed, knet
runs them) and DaemonSet, StatefulSet, Job, CronJob, ControllerRevision (permissive: stored
and served, spec/status kept as plain JSON until a controller acts on them).

Note the two selector shapes: apps/v1 uses a LabelSelector object, ReplicationController a
plain `{key: value}` map; `control.models.selectors.selector_from_spec` reads both.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from control.models.meta import Condition, IntOrString, KModel, LabelSelector, TopLevel
from control.models.pod import PodTemplateSpec

__all__ = [
    "ControllerRevision",
    "CronJob",
    "DaemonSet",
    "Deployment",
    "DeploymentSpec",
    "DeploymentStatus",
    "DeploymentStrategy",
    "Job",
    "ReplicaSet",
    "ReplicaSetSpec",
    "ReplicaSetStatus",
    "ReplicationController",
    "ReplicationControllerSpec",
    "RollingUpdateDeployment",
    "StatefulSet",
]


class ReplicaSetSpec(KModel):
    replicas: int | None = None
    selector: LabelSelector | None = None
    template: PodTemplateSpec | None = None
    min_ready_seconds: int | None = None


class ReplicaSetStatus(KModel):
    replicas: int = 0
    fully_labeled_replicas: int | None = None
    ready_replicas: int | None = None
    available_replicas: int | None = None
    observed_generation: int | None = None
    conditions: list[Condition] | None = None


class ReplicaSet(TopLevel):
    api_version: str | None = "apps/v1"
    kind: str | None = "ReplicaSet"
    spec: ReplicaSetSpec = Field(default_factory=ReplicaSetSpec)
    status: ReplicaSetStatus | None = None


class ReplicationControllerSpec(KModel):
    replicas: int | None = None
    selector: dict[str, str] | None = None
    template: PodTemplateSpec | None = None
    min_ready_seconds: int | None = None


class ReplicationController(TopLevel):
    api_version: str | None = "v1"
    kind: str | None = "ReplicationController"
    spec: ReplicationControllerSpec = Field(default_factory=ReplicationControllerSpec)
    status: ReplicaSetStatus | None = None


class RollingUpdateDeployment(KModel):
    max_surge: IntOrString | None = None
    max_unavailable: IntOrString | None = None


class DeploymentStrategy(KModel):
    type: str | None = None
    rolling_update: RollingUpdateDeployment | None = None


class DeploymentSpec(KModel):
    replicas: int | None = None
    selector: LabelSelector | None = None
    template: PodTemplateSpec | None = None
    strategy: DeploymentStrategy | None = None
    min_ready_seconds: int | None = None
    revision_history_limit: int | None = None
    paused: bool | None = None
    progress_deadline_seconds: int | None = None


class DeploymentStatus(KModel):
    observed_generation: int | None = None
    replicas: int | None = None
    updated_replicas: int | None = None
    ready_replicas: int | None = None
    available_replicas: int | None = None
    unavailable_replicas: int | None = None
    conditions: list[Condition] | None = None
    collision_count: int | None = None


class Deployment(TopLevel):
    api_version: str | None = "apps/v1"
    kind: str | None = "Deployment"
    spec: DeploymentSpec = Field(default_factory=DeploymentSpec)
    status: DeploymentStatus | None = None


class _Permissive(TopLevel):
    spec: dict[str, Any] | None = None
    status: dict[str, Any] | None = None


class DaemonSet(_Permissive):
    api_version: str | None = "apps/v1"
    kind: str | None = "DaemonSet"


class StatefulSet(_Permissive):
    api_version: str | None = "apps/v1"
    kind: str | None = "StatefulSet"


class Job(_Permissive):
    api_version: str | None = "batch/v1"
    kind: str | None = "Job"


class CronJob(_Permissive):
    api_version: str | None = "batch/v1"
    kind: str | None = "CronJob"


class ControllerRevision(TopLevel):
    api_version: str | None = "apps/v1"
    kind: str | None = "ControllerRevision"
    data: dict[str, Any] | None = None
    revision: int = 0
