"""HorizontalPodAutoscaler (autoscaling/v2, also served as v1): defaults, validation, the
`kubectl get hpa` columns and the v1 <-> v2 conversion, as kube-apiserver has them.

Objects are stored in v2. A v1 body (what `kubectl autoscale` of kubectl 1.32 sends) becomes
v2 on the way in (`targetCPUUtilizationPercentage` -> one cpu Utilization metric) and every
object read through v1 is converted back (the cpu metric's target and current value; the v2
conditions in the `autoscaling.alpha.kubernetes.io/conditions` annotation, as upstream keeps
them). Other v2 metrics and `behavior` have no v1 field: a write through v1 drops them.
Plain dict code, no pydantic: the printers and the controller read the same shapes.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from control.models import printers as p
from control.models.fielderrors import FieldErrors

__all__ = ["AUTOSCALING_CHECKS", "AUTOSCALING_COLUMNS", "AUTOSCALING_DEFAULTS",
           "AUTOSCALING_PRINTERS", "DEFAULT_CPU_UTILIZATION", "default_behavior",
           "format_targets", "v1_to_v2", "v2_to_v1"]

Obj = dict[str, Any]
DEFAULT_CPU_UTILIZATION = 80
CONDITIONS_ANNOTATION = "autoscaling.alpha.kubernetes.io/conditions"
_RESOURCES = ("cpu", "memory")


# ---- defaults (pkg/apis/autoscaling/v2/defaults.go) --------------------------------------

def default_behavior(behavior: Obj) -> Obj:
    """Fill a given `behavior`'s unset rules: scale up at once (window 0) by 4 pods or 100%
    per 15 s, whichever is more; scale down after a 300 s window by up to 100% per 15 s."""
    up: Obj = behavior["scaleUp"] if isinstance(behavior.get("scaleUp"), dict) else {}
    down: Obj = behavior["scaleDown"] if isinstance(behavior.get("scaleDown"), dict) else {}
    up.setdefault("stabilizationWindowSeconds", 0)
    up.setdefault("selectPolicy", "Max")
    up.setdefault("policies", [{"type": "Pods", "value": 4, "periodSeconds": 15},
                               {"type": "Percent", "value": 100, "periodSeconds": 15}])
    down.setdefault("stabilizationWindowSeconds", 300)
    down.setdefault("selectPolicy", "Max")
    down.setdefault("policies", [{"type": "Percent", "value": 100, "periodSeconds": 15}])
    behavior["scaleUp"], behavior["scaleDown"] = up, down
    return behavior


def _default_hpa(obj: Obj, old: Obj | None) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    spec.setdefault("minReplicas", 1)
    if not spec.get("metrics"):
        spec["metrics"] = [_cpu_metric(DEFAULT_CPU_UTILIZATION)]
    if isinstance(spec.get("behavior"), dict):
        default_behavior(spec["behavior"])


AUTOSCALING_DEFAULTS = {"horizontalpodautoscalers": _default_hpa}


# ---- validation (pkg/apis/autoscaling/validation) ----------------------------------------

def _validate_target(errs: FieldErrors, path: str, target: Any, *, resource: bool) -> None:
    if not isinstance(target, dict):
        errs.required(path, "")
        return
    kind = target.get("type")
    allowed = ("Utilization", "Value", "AverageValue")
    if not kind:
        errs.required(f"{path}.type", "must specify a metric target type")
    elif kind not in allowed:
        errs.not_supported(f"{path}.type", kind, allowed)
    if kind == "Utilization":
        if not resource:
            errs.invalid(f"{path}.type", kind, "Utilization is only valid for Resource "
                         "and ContainerResource metrics")
        util = target.get("averageUtilization")
        if util is None:
            errs.required(f"{path}.averageUtilization",
                          "must set averageUtilization when type is Utilization")
        elif not isinstance(util, int) or util <= 0:
            errs.invalid(f"{path}.averageUtilization", util, "must be greater than 0")
    if kind == "AverageValue" and target.get("averageValue") is None:
        errs.required(f"{path}.averageValue", "must set averageValue when type is AverageValue")
    if kind == "Value" and target.get("value") is None:
        errs.required(f"{path}.value", "must set value when type is Value")


def _validate_metric(errs: FieldErrors, path: str, metric: Any) -> None:
    if not isinstance(metric, dict):
        errs.type_error(path, metric, "object")
        return
    kind = metric.get("type")
    kinds = ("Object", "Pods", "Resource", "ContainerResource", "External")
    if not kind:
        errs.required(f"{path}.type", "must specify a metric source type")
        return
    if kind not in kinds:
        errs.not_supported(f"{path}.type", kind, kinds)
        return
    field = {"Object": "object", "Pods": "pods", "Resource": "resource",
             "ContainerResource": "containerResource", "External": "external"}[kind]
    source = metric.get(field)
    if not isinstance(source, dict):
        errs.required(f"{path}.{field}", "must populate information for the given metric "
                      "source")
        return
    if kind in ("Resource", "ContainerResource"):
        if not source.get("name"):
            errs.required(f"{path}.{field}.name", "must specify a resource name")
        if kind == "ContainerResource" and not source.get("container"):
            errs.required(f"{path}.{field}.container", "must specify a container")
    _validate_target(errs, f"{path}.{field}.target", source.get("target"),
                     resource=kind in ("Resource", "ContainerResource"))


def _validate_rules(errs: FieldErrors, path: str, rules: Any) -> None:
    if not isinstance(rules, dict):
        return
    window = rules.get("stabilizationWindowSeconds")
    if window is not None:
        errs.int_range(f"{path}.stabilizationWindowSeconds", window, 0, 3600)
    if rules.get("selectPolicy") is not None:
        errs.one_of(f"{path}.selectPolicy", rules["selectPolicy"], ("Max", "Min", "Disabled"))
    for i, pol in enumerate(errs.list_of(f"{path}.policies", rules.get("policies") or [])):
        at = f"{path}.policies[{i}]"
        if not isinstance(pol, dict):
            errs.type_error(at, pol, "object")
            continue
        errs.one_of(f"{at}.type", pol.get("type"), ("Pods", "Percent"))
        if not isinstance(pol.get("value"), int) or pol["value"] <= 0:
            errs.invalid(f"{at}.value", pol.get("value"), "must be greater than zero")
        errs.int_range(f"{at}.periodSeconds", pol.get("periodSeconds"), 1, 1800)


def _validate_hpa(errs: FieldErrors, obj: Obj) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        errs.required("spec", "")
        return
    ref = spec.get("scaleTargetRef")
    if not isinstance(ref, dict):
        errs.required("spec.scaleTargetRef", "")
    else:
        for key in ("kind", "name"):
            if not ref.get(key):
                errs.required(f"spec.scaleTargetRef.{key}", "")
    low = spec.get("minReplicas")
    if low is not None and (not isinstance(low, int) or low < 1):
        errs.invalid("spec.minReplicas", low, "must be greater than or equal to 1")
    high = spec.get("maxReplicas")
    if high is None:
        errs.required("spec.maxReplicas", "")
    elif not isinstance(high, int) or high < 1:
        errs.invalid("spec.maxReplicas", high, "must be greater than 0")
    elif isinstance(low, int) and high < low:
        errs.invalid("spec.maxReplicas", high, "must be greater than or equal to `minReplicas`")
    for i, metric in enumerate(errs.list_of("spec.metrics", spec.get("metrics") or [])):
        _validate_metric(errs, f"spec.metrics[{i}]", metric)
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):
        _validate_rules(errs, "spec.behavior.scaleUp", behavior.get("scaleUp"))
        _validate_rules(errs, "spec.behavior.scaleDown", behavior.get("scaleDown"))


AUTOSCALING_CHECKS = {"horizontalpodautoscalers": _validate_hpa}


# ---- kubectl get hpa (printers.go printHorizontalPodAutoscaler) --------------------------

_NAME = ("Name", "string", 0, ("Name must be unique within a namespace. Is required when "
         "creating resources, although some resources may allow a client to request the "
         "generation of an appropriate name automatically. Cannot be updated."))
AUTOSCALING_COLUMNS: dict[str, list[tuple[str, str, int, str]]] = {
    "horizontalpodautoscalers": [
        _NAME,
        ("Reference", "string", 0, "reference to the target object"),
        ("Targets", "string", 0, "the target metrics and their current values"),
        ("MinPods", "string", 0, ("the lower limit for the number of pods that can be set by "
         "the autoscaler, default 1.")),
        ("MaxPods", "integer", 0, ("the upper limit for the number of pods that can be set by "
         "the autoscaler; cannot be smaller than MinReplicas.")),
        ("Replicas", "integer", 0, ("current number of replicas of pods managed by this "
         "autoscaler.")),
        ("Age", "string", 0, ("CreationTimestamp is a timestamp representing the server time "
                              "when this object was created."))],
}


def _target_text(metric: Obj, status: Obj | None) -> str:
    kind = metric.get("type")
    field = {"Resource": "resource", "ContainerResource": "containerResource", "Pods": "pods",
             "Object": "object", "External": "external"}.get(str(kind), "")
    source = metric.get(field) or {}
    target = source.get("target") or {}
    current = ((status or {}).get(field) or {}).get("current") or {}
    name = source.get("name") or (source.get("metric") or {}).get("name") or "<unknown>"
    if kind in ("Resource", "ContainerResource") and target.get("averageValue") is None:
        now = current.get("averageUtilization")
        shown = f"{now}%" if now is not None else "<unknown>"
        want = target.get("averageUtilization")
        return f"{name}: {shown}/{want}%" if want is not None else f"{name}: {shown}/<auto>"
    key = "averageValue" if target.get("averageValue") is not None else "value"
    return f"{name}: {current.get(key, '<unknown>')}/{target.get(key, '<unknown>')}"


def format_targets(hpa: Obj) -> str:
    """`cpu: 250%/50%`, as kubectl prints TARGETS; `<none>` with no metric."""
    metrics = p.dig(hpa, "spec", "metrics") or []
    current = p.dig(hpa, "status", "currentMetrics") or []
    shown = [_target_text(m, current[i] if i < len(current) else None)
             for i, m in enumerate(metrics) if isinstance(m, dict)]
    if not shown:
        return "<none>"
    text = ", ".join(shown[:2])
    return text + (f" + {len(shown) - 2} more..." if len(shown) > 2 else "")


def _hpa_row(obj: Obj, now: datetime) -> list[Any]:
    spec = obj.get("spec") or {}
    ref = spec.get("scaleTargetRef") or {}
    low = spec.get("minReplicas")
    return [p.dig(obj, "metadata", "name"), f"{ref.get('kind', '')}/{ref.get('name', '')}",
            format_targets(obj), str(low) if low is not None else "<unset>",
            spec.get("maxReplicas", 0), p.dig(obj, "status", "currentReplicas") or 0,
            p.age(p.dig(obj, "metadata", "creationTimestamp"), now)]


AUTOSCALING_PRINTERS = {"horizontalpodautoscalers": _hpa_row}


# ---- v1 <-> v2 (pkg/apis/autoscaling/v1/conversion.go) -----------------------------------

def _cpu_metric(percent: int) -> Obj:
    return {"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": percent}}}


def v1_to_v2(obj: Obj) -> Obj:
    """A v1 HorizontalPodAutoscaler body in the v2 shape (apiVersion left to the caller)."""
    out = dict(obj)
    spec = dict(obj.get("spec") or {}) if isinstance(obj.get("spec"), dict) else obj.get("spec")
    if isinstance(spec, dict):
        percent = spec.pop("targetCPUUtilizationPercentage", None)
        if percent is not None:
            spec["metrics"] = [_cpu_metric(percent)]
        out["spec"] = spec
    status = obj.get("status")
    if isinstance(status, dict):
        status = dict(status)
        current = status.pop("currentCPUUtilizationPercentage", None)
        if current is not None:
            status["currentMetrics"] = [{"type": "Resource", "resource": {
                "name": "cpu", "current": {"averageUtilization": current}}}]
        out["status"] = status
    return out


def v2_to_v1(obj: Obj) -> Obj:
    """A stored (v2) HorizontalPodAutoscaler as v1 shows it."""
    out = dict(obj)
    spec = dict(obj.get("spec") or {})
    metrics = spec.pop("metrics", None) or []
    spec.pop("behavior", None)
    for m in metrics:
        res = (m or {}).get("resource") or {}
        target = res.get("target") or {}
        if m.get("type") == "Resource" and res.get("name") == "cpu" \
                and target.get("averageUtilization") is not None:
            spec["targetCPUUtilizationPercentage"] = target["averageUtilization"]
    out["spec"] = spec
    status = dict(obj.get("status") or {})
    conditions = status.pop("conditions", None)
    for m in status.pop("currentMetrics", None) or []:
        res = (m or {}).get("resource") or {}
        util = (res.get("current") or {}).get("averageUtilization")
        if m.get("type") == "Resource" and res.get("name") == "cpu" and util is not None:
            status["currentCPUUtilizationPercentage"] = util
    if obj.get("status") is not None:
        status.setdefault("currentReplicas", 0)
        status.setdefault("desiredReplicas", 0)
        out["status"] = status
    if conditions:
        md = dict(obj.get("metadata") or {})
        md["annotations"] = {**(md.get("annotations") or {}),
                             CONDITIONS_ANNOTATION: json.dumps(conditions,
                                                               separators=(",", ":"))}
        out["metadata"] = md
    return out
