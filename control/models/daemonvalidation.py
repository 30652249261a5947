"""DaemonSet validation beyond what it shares with ReplicaSet (selector, template), as
kube-apiserver's ValidateDaemonSetSpec (restartPolicy Always is the shared template check):
no activeDeadlineSeconds in the template, updateStrategy is
RollingUpdate (maxUnavailable and maxSurge int-or-percent, not both 0) or OnDelete,
minReadySeconds and revisionHistoryLimit are not negative."""

from __future__ import annotations

from typing import Any

from control.models.fielderrors import FieldErrors
from control.models.workloadvalidation import _int_or_percent, validate_replicaset

__all__ = ["validate_daemonset"]

Obj = dict[str, Any]


def validate_daemonset(errs: FieldErrors, obj: Obj) -> None:
    spec = validate_replicaset(errs, obj)
    if spec is None:
        return
    pod = ((spec.get("template") or {}).get("spec")) if isinstance(
        spec.get("template"), dict) else None
    if isinstance(pod, dict) and pod.get("activeDeadlineSeconds") is not None:
        errs.forbidden("spec.template.spec.activeDeadlineSeconds",
                       "activeDeadlineSeconds in DaemonSet is not Supported")
    for field in ("minReadySeconds", "revisionHistoryLimit"):
        if spec.get(field) is not None:
            errs.int_range(f"spec.{field}", spec[field], 0)
    strategy = spec.get("updateStrategy")
    if not isinstance(strategy, dict):
        return
    kind = strategy.get("type")
    if not errs.one_of("spec.updateStrategy.type", kind, ("OnDelete", "RollingUpdate")):
        return
    rolling = strategy.get("rollingUpdate")
    if kind != "RollingUpdate" or not isinstance(rolling, dict):
        return
    path = "spec.updateStrategy.rollingUpdate"
    surge = _int_or_percent(errs, f"{path}.maxSurge", rolling.get("maxSurge", 0), max_100=True)
    unavailable = _int_or_percent(errs, f"{path}.maxUnavailable",
                                  rolling.get("maxUnavailable", 1), max_100=True)
    if surge == 0 and unavailable == 0:
        errs.invalid(f"{path}.maxUnavailable", rolling.get("maxUnavailable"),
                     "may not be 0 when `maxSurge` is 0")
