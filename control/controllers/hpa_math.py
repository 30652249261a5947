"""The HorizontalPodAutoscaler's arithmetic, pure (no client, no clock: `now` is passed in),
ported from kube-controller-manager's podautoscaler (replica_calculator.go, horizontal.go).

`resource_replicas`: desired = ceil(ready pods x usage / target), nothing within the 10%
tolerance; pods being deleted or Failed are ignored, Pending and (for CPU) not-yet-ready pods
are unready, pods without a metric are missing, and both are then assumed to use 0 (when
scaling up) or their whole request (when scaling down) so that they never push the
recommendation the wrong way. `Recommender` keeps one HPA's recent recommendations and scale
events and turns a raw recommendation into the replicas to set: the highest recommendation of
the stabilization window (300 s by default) when going down, the scale-up limit (twice the
replicas, at least 4) or `behavior`'s policies, then min/max, with the reason upstream gives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CPU_INITIALIZATION_PERIOD", "TOLERANCE", "MetricError", "PodSample", "Recommender",
           "Scaled", "resource_replicas"]

TOLERANCE = 0.1
CPU_INITIALIZATION_PERIOD = 300.0
INITIAL_READINESS_DELAY = 30.0
DOWNSCALE_STABILIZATION = 300.0
SCALE_UP_LIMIT_FACTOR, SCALE_UP_LIMIT_MINIMUM = 2.0, 4.0


class MetricError(Exception):
    """The replica count cannot be computed from this metric; the message says why."""


@dataclass(frozen=True)
class PodSample:
    """What the calculation needs of one pod selected by the target."""
    name: str
    phase: str = "Running"
    deleting: bool = False
    ready: bool | None = True            # the Ready condition (None: no condition)
    ready_since: float | None = None     # its lastTransitionTime
    started: float | None = None         # status.startTime
    request: float | None = None         # millis of the resource requested; None: missing
    missing_request: str = ""            # e.g. `container php-apache`, when request is None
    usage: float | None = None           # millis used; None: no metric for it
    timestamp: float = 0.0               # the metric's end of window
    window: float = 0.0


def _group(pods: list[PodSample], cpu: bool, now: float
           ) -> tuple[list[PodSample], list[PodSample], list[PodSample]]:
    """(ready with a metric, unready, missing a metric); deleted and Failed pods dropped."""
    ready, unready, missing = [], [], []
    for p in pods:
        if p.deleting or p.phase == "Failed":
            continue
        if p.phase == "Pending":
            unready.append(p)
        elif p.usage is None:
            missing.append(p)
        elif cpu and _unready_cpu(p, now):
            unready.append(p)
        else:
            ready.append(p)
    return ready, unready, missing


def _unready_cpu(p: PodSample, now: float) -> bool:
    if p.ready is None or p.started is None or p.ready_since is None:
        return True
    if p.started + CPU_INITIALIZATION_PERIOD > now:
        return p.ready is False or p.timestamp < p.ready_since + p.window
    return p.ready is False and p.started + INITIAL_READINESS_DELAY > p.ready_since


def _ratio(values: dict[str, float], requests: dict[str, float], target: float,
           utilization: bool) -> tuple[float, float]:
    """(usage / target, current): utilization in whole percent of the requests, or the
    average value per pod."""
    if utilization:
        total = sum(requests[n] for n in values if n in requests)
        if total == 0:
            raise MetricError("no metrics returned matched known pods")
        current = float(int(sum(v for n, v in values.items() if n in requests) * 100 / total))
    else:
        current = sum(values.values()) / len(values)
    return current / target, current


def resource_replicas(current: int, pods: list[PodSample], *, resource: str, target: float,
                      utilization: bool, now: float, tolerance: float = TOLERANCE
                      ) -> tuple[int, float, float]:
    """(replicas, current utilization % or average millis, average millis per pod);
    `target` is a percentage when `utilization`, else millis per pod. MetricError if none."""
    if not pods:
        raise MetricError("no pods returned by selector while calculating replica count")
    ready, unready, missing = _group(pods, resource == "cpu", now)
    if not ready:
        raise MetricError("did not receive metrics for targeted pods (pods might be unready)")
    requests: dict[str, float] = {}
    if utilization:
        for p in pods:
            if p.request is None:
                raise MetricError(f"missing request for {resource} in {p.missing_request} "
                                  f"of Pod {p.name}")
            requests[p.name] = p.request
    values = {p.name: float(p.usage or 0.0) for p in ready}
    ratio, shown = _ratio(values, requests, target, utilization)
    raw = sum(values.values()) / len(values)
    with_unready = bool(unready) and ratio > 1.0
    if not with_unready and not missing:
        if abs(1.0 - ratio) <= tolerance:
            return current, shown, raw
        return math.ceil(ratio * len(ready)), shown, raw
    for p in missing:
        if ratio < 1.0:
            values[p.name] = (requests[p.name] * max(100.0, target) / 100 if utilization
                              else target)
        elif ratio > 1.0:
            values[p.name] = 0.0
    if with_unready:
        for p in unready:
            values[p.name] = 0.0
    new_ratio, _ = _ratio(values, requests, target, utilization)
    if abs(1.0 - new_ratio) <= tolerance or (ratio < 1.0 < new_ratio) \
            or (new_ratio < 1.0 < ratio):
        return current, shown, raw
    replicas = math.ceil(new_ratio * len(values))
    if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
        return current, shown, raw
    return replicas, shown, raw


# ---- from a recommendation to the replicas to set ----------------------------------------

@dataclass(frozen=True)
class Scaled:
    replicas: int
    stabilized: int
    able_reason: str          # AbleToScale True: ScaleDownStabilized / ReadyForNewScale ...
    able_message: str
    limit_reason: str         # ScalingLimited: DesiredWithinRange / TooManyReplicas / ...
    limit_message: str

    @property
    def limited(self) -> bool:
        return self.replicas != self.stabilized


_WITHIN = ("DesiredWithinRange", "the desired count is within the acceptable range")
_TOO_FEW = ("TooFewReplicas", "the desired replica count is less than the minimum replica count")
_TOO_MANY = ("TooManyReplicas", ("the desired replica count is more than the maximum replica "
             "count"))
_UP_LIMIT = ("ScaleUpLimit", ("the desired replica count is increasing faster than the maximum "
             "scale rate"))
_DOWN_LIMIT = ("ScaleDownLimit", ("the desired replica count is decreasing faster than the "
               "maximum scale rate"))
_READY = ("ReadyForNewScale", "recommended size matches current size")
_DOWN_STABLE = ("ScaleDownStabilized", ("recent recommendations were higher than current one, "
                "applying the highest recent recommendation"))
_UP_STABLE = ("ScaleUpStabilized", ("recent recommendations were lower than current one, "
              "applying the lowest recent recommendation"))


@dataclass
class Recommender:
    """One HPA's memory: recommendations (replicas, time) and scale events (change, time)."""
    recommendations: list[tuple[int, float]] = field(default_factory=list)
    up_events: list[tuple[int, float]] = field(default_factory=list)
    down_events: list[tuple[int, float]] = field(default_factory=list)

    def normalize(self, *, current: int, desired: int, low: int, high: int, now: float,
                  behavior: dict[str, Any] | None) -> Scaled:
        if behavior is None:
            return self._plain(current, desired, low, high, now)
        return self._with_behavior(current, desired, low, high, now, behavior)

    def _remember(self, desired: int, now: float, keep: float) -> None:
        self.recommendations = [(r, t) for r, t in self.recommendations if t > now - keep]
        self.recommendations.append((desired, now))

    def _plain(self, current: int, desired: int, low: int, high: int, now: float) -> Scaled:
        cutoff = now - DOWNSCALE_STABILIZATION
        stabilized = max([desired] + [r for r, t in self.recommendations if t > cutoff])
        self._remember(desired, now, DOWNSCALE_STABILIZATION)
        able = _DOWN_STABLE if stabilized != desired else _READY
        up_limit = int(max(SCALE_UP_LIMIT_FACTOR * current, SCALE_UP_LIMIT_MINIMUM))
        if stabilized < low:
            replicas, why = low, _TOO_FEW
        elif high > up_limit and stabilized > up_limit:
            replicas, why = up_limit, _UP_LIMIT
        elif stabilized > high:
            replicas, why = high, _TOO_MANY
        else:
            replicas, why = stabilized, _WITHIN
        return Scaled(replicas, stabilized, *able, *why)

    def _with_behavior(self, current: int, desired: int, low: int, high: int, now: float,
                       behavior: dict[str, Any]) -> Scaled:
        up, down = behavior.get("scaleUp") or {}, behavior.get("scaleDown") or {}
        up_window = float(up.get("stabilizationWindowSeconds") or 0)
        down_window = float(down.get("stabilizationWindowSeconds", DOWNSCALE_STABILIZATION))
        up_rec = min([desired] + [r for r, t in self.recommendations if t > now - up_window])
        down_rec = max([desired] + [r for r, t in self.recommendations
                                    if t > now - down_window])
        stabilized = min(max(current, up_rec), down_rec)
        self._remember(desired, now, max(up_window, down_window))
        able = _READY if stabilized == desired else (
            _DOWN_STABLE if stabilized > desired else _UP_STABLE)
        replicas, why = stabilized, _WITHIN
        if stabilized > current:
            limit = max(self._limit(current, up, now, up=True), current)
            top, why_top = (limit, _UP_LIMIT) if high > limit else (high, _TOO_MANY)
            if stabilized > top:
                replicas, why = top, why_top
        elif stabilized < current:
            limit = min(self._limit(current, down, now, up=False), current)
            bottom, why_bottom = (limit, _DOWN_LIMIT) if low < limit else (low, _TOO_FEW)
            if stabilized < bottom:
                replicas, why = bottom, why_bottom
        return Scaled(replicas, stabilized, *able, *why)

    @staticmethod
    def _changed(events: list[tuple[int, float]], period: float, now: float) -> int:
        return sum(c for c, t in events if t > now - period)

    def _limit(self, current: int, rules: dict[str, Any], now: float, *, up: bool) -> int:
        """How far one step may go: each policy's bound from the replicas at the start of its
        period; selectPolicy Max picks the most permissive, Min the least, Disabled none."""
        select = rules.get("selectPolicy") or "Max"
        if select == "Disabled":
            return current
        out: list[int] = []
        for pol in rules.get("policies") or []:
            period = float(pol.get("periodSeconds") or 15)
            start = (current - self._changed(self.up_events, period, now)
                     + self._changed(self.down_events, period, now))
            value = int(pol["value"])
            if pol.get("type") == "Pods":
                out.append(start + value if up else start - value)
            else:
                out.append(math.ceil(start * (1 + value / 100)) if up
                           else int(start * (1 - value / 100)))
        if not out:
            return current
        permissive = max if up else min
        strict = min if up else max
        return strict(out) if select == "Min" else permissive(out)

    def record_scale(self, before: int, after: int, now: float, keep: float = 1800.0) -> None:
        """A rescale happened (only kept for HPAs with `behavior`, as upstream)."""
        self.up_events = [(c, t) for c, t in self.up_events if t > now - keep]
        self.down_events = [(c, t) for c, t in self.down_events if t > now - keep]
        if after > before:
            self.up_events.append((after - before, now))
        elif after < before:
            self.down_events.append((before - after, now))
