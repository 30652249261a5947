"""Validation of workload controllers: Deployment, ReplicaSet, ReplicationController.

The rule users meet most: the selector must match the template's labels, reported on
`spec.template.metadata.labels` as Kubernetes does. Selectors of apps/v1 kinds are immutable
after creation; replicas must be >= 0; a rolling update cannot have maxSurge and
maxUnavailable both 0.
"""

from __future__ import annotations

import re
from typing import Any

from control.errors import BadRequest
from control.models import names
from control.models.fielderrors import FieldErrors
from control.models.podvalidation import validate_pod_spec
from control.models.selectors import LabelSelector, selector_from_labels, selector_from_spec

__all__ = [
    "validate_deployment",
    "validate_labels",
    "validate_replicaset",
    "validate_replication_controller",
    "validate_spec_selector",
    "validate_workload_update",
]

Obj = dict[str, Any]
_PERCENT = re.compile(r"(\d+)%\Z")


def validate_labels(errs: FieldErrors, path: str, labels: Any) -> None:
    if labels is None:
        return
    if not isinstance(labels, dict):
        errs.type_error(path, labels, "a map of string keys to string values")
        return
    for key, value in labels.items():
        errs.names(path, key, names.qualified_name)
        errs.names(path, value, names.label_value)


def validate_spec_selector(errs: FieldErrors, path: str, selector: Any) -> LabelSelector | None:
    """Check a `{matchLabels, matchExpressions}` selector; the parsed one if it is valid."""
    if selector is None:
        errs.required(path)
        return None
    if not isinstance(selector, dict):
        errs.type_error(path, selector, "a label selector object")
        return None
    validate_labels(errs, f"{path}.matchLabels", selector.get("matchLabels"))
    exprs = errs.list_of(f"{path}.matchExpressions", selector.get("matchExpressions"))
    for i, expr in enumerate(exprs):
        if isinstance(expr, dict) and expr.get("key"):
            errs.names(f"{path}.matchExpressions[{i}].key", expr["key"], names.qualified_name)
    try:
        parsed = selector_from_spec(selector)
    except BadRequest as e:
        errs.invalid(path, selector, e.message)
        return None
    if parsed.is_empty:
        errs.invalid(path, selector, "empty selector is invalid for this resource")
        return None
    return parsed


def _template(errs: FieldErrors, spec: Obj, selector: LabelSelector | None) -> None:
    template = spec.get("template")
    if not isinstance(template, dict):
        errs.required("spec.template") if template is None else errs.type_error(
            "spec.template", template, "a pod template object")
        return
    md = template.get("metadata") or {}
    labels = md.get("labels") if isinstance(md, dict) else None
    validate_labels(errs, "spec.template.metadata.labels", labels)
    if selector is not None and not selector.matches(labels if isinstance(labels, dict)
                                                     else None):
        errs.invalid("spec.template.metadata.labels", labels or {},
                     "`selector` does not match template `labels`")
    validate_pod_spec(errs, template.get("spec"), "spec.template.spec", template=True)


def _replicas(errs: FieldErrors, spec: Obj) -> None:
    for key in ("replicas", "minReadySeconds"):
        if spec.get(key) is not None:
            errs.int_range(f"spec.{key}", spec[key], 0)


def _spec(errs: FieldErrors, obj: Obj) -> Obj | None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        errs.required("spec") if spec is None else errs.type_error("spec", spec, "an object")
        return None
    return spec


def validate_replicaset(errs: FieldErrors, obj: Obj) -> Obj | None:
    """ReplicaSet (and the part Deployment shares): replicas, selector, template."""
    spec = _spec(errs, obj)
    if spec is None:
        return None
    _replicas(errs, spec)
    selector = validate_spec_selector(errs, "spec.selector", spec.get("selector"))
    _template(errs, spec, selector)
    return spec


def validate_replication_controller(errs: FieldErrors, obj: Obj) -> None:
    spec = _spec(errs, obj)
    if spec is None:
        return
    _replicas(errs, spec)
    selector = spec.get("selector")
    parsed: LabelSelector | None = None
    if not selector:
        errs.required("spec.selector", "or set labels on spec.template.metadata.labels")
    elif not isinstance(selector, dict):
        errs.type_error("spec.selector", selector, "a map of labels")
    else:
        validate_labels(errs, "spec.selector", selector)
        parsed = selector_from_labels({str(k): str(v) for k, v in selector.items()})
    _template(errs, spec, parsed)


def _int_or_percent(errs: FieldErrors, path: str, value: Any, *, max_100: bool) -> int | None:
    """The value as a number (percent or absolute) for the both-zero check, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        errs.type_error(path, value, "an integer or a percentage like '25%'")
        return None
    if isinstance(value, int):
        return value if errs.int_range(path, value, 0) else None
    m = _PERCENT.match(value)
    if m is None:
        errs.invalid(path, value, "a valid percent string must be a numeric string followed by "
                     "an ending '%' (e.g. '1%',  or '93%', regex used for validation is "
                     "'[0-9]+%')")
        return None
    pct = int(m.group(1))
    if max_100 and pct > 100:
        errs.invalid(path, value, "must not be greater than 100%")
        return None
    return pct


def _strategy(errs: FieldErrors, strategy: Any) -> None:
    if not isinstance(strategy, dict):
        return
    kind = strategy.get("type", "RollingUpdate")
    if not errs.one_of("spec.strategy.type", kind, ("Recreate", "RollingUpdate")):
        return
    rolling = strategy.get("rollingUpdate")
    if kind == "Recreate":
        if rolling is not None:
            errs.forbidden("spec.strategy.rollingUpdate",
                           "may not be specified when strategy `type` is 'Recreate'")
        return
    if not isinstance(rolling, dict):
        return
    path = "spec.strategy.rollingUpdate"
    surge = _int_or_percent(errs, f"{path}.maxSurge", rolling.get("maxSurge", "25%"),
                            max_100=False)
    unavailable = _int_or_percent(errs, f"{path}.maxUnavailable",
                                  rolling.get("maxUnavailable", "25%"), max_100=True)
    if surge == 0 and unavailable == 0:
        errs.invalid(f"{path}.maxUnavailable", rolling.get("maxUnavailable"),
                     "may not be 0 when `maxSurge` is 0")


def validate_deployment(errs: FieldErrors, obj: Obj) -> None:
    spec = validate_replicaset(errs, obj)
    if spec is None:
        return
    _strategy(errs, spec.get("strategy"))
    if spec.get("revisionHistoryLimit") is not None:
        errs.int_range("spec.revisionHistoryLimit", spec["revisionHistoryLimit"], 0)
    deadline = spec.get("progressDeadlineSeconds")
    if deadline is not None and errs.int_range("spec.progressDeadlineSeconds", deadline, 1):
        min_ready = spec.get("minReadySeconds") or 0
        if isinstance(min_ready, int) and deadline <= min_ready:
            errs.invalid("spec.progressDeadlineSeconds", deadline,
                         "must be greater than minReadySeconds")
    if spec.get("paused") is not None and not isinstance(spec["paused"], bool):
        errs.type_error("spec.paused", spec["paused"], "a boolean")


def validate_workload_update(errs: FieldErrors, new: Obj, old: Obj) -> None:
    """apps/v1 selectors are immutable: changing one would orphan every pod."""
    selector = (new.get("spec") or {}).get("selector")
    if selector != (old.get("spec") or {}).get("selector"):
        errs.invalid("spec.selector", selector, "field is immutable")
