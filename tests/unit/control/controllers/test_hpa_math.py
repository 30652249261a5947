"""The HPA arithmetic (control.controllers.hpa_math) against upstream's rules, with time
passed by hand: ratio to target with the 10% tolerance, unready and missing pods, the
scale-up limit, the 300 s scale-down stabilization window and `behavior` policies."""

from __future__ import annotations

import pytest

from control.controllers.hpa_math import MetricError, PodSample, Recommender, resource_replicas
from control.models.autoscaling import default_behavior

T0 = 10_000.0     # "now"; pods started long before (past the CPU initialization period)


def pod(name: str, usage: float | None, request: float = 200.0, **kw: object) -> PodSample:
    base = {"started": T0 - 3600, "ready_since": T0 - 3500, "timestamp": T0, "window": 15.0}
    base.update(kw)
    return PodSample(name=name, usage=usage, request=request, **base)  # type: ignore[arg-type]


def calc(current: int, pods: list[PodSample], target: float = 50, **kw: object) -> int:
    replicas, _, _ = resource_replicas(current, pods, resource="cpu", target=target,
                                       utilization=True, now=T0, **kw)  # type: ignore[arg-type]
    return replicas


def test_walkthrough_numbers_250_percent_of_50_gives_five_replicas() -> None:
    replicas, util, raw = resource_replicas(1, [pod("a", 500)], resource="cpu", target=50,
                                            utilization=True, now=T0)
    assert (replicas, util, raw) == (5, 250, 500)


def test_within_tolerance_keeps_replicas_and_just_outside_moves() -> None:
    pods = [pod("a", 108), pod("b", 108)]           # 54% of 50%: ratio 1.08
    assert calc(2, pods) == 2
    pods = [pod("a", 112), pod("b", 112)]           # 56%: ratio 1.12 -> ceil(2.24)
    assert calc(2, pods) == 3
    assert calc(4, [pod(n, 10) for n in "abcd"]) == 1      # 5% of 50% -> ceil(0.4)


def test_missing_request_names_container_and_pod() -> None:
    bad = PodSample(name="web-1", usage=5, request=None, missing_request="container php",
                    started=T0 - 3600, ready_since=T0 - 3500, timestamp=T0, window=15)
    with pytest.raises(MetricError, match="missing request for cpu in container php of Pod "
                                          "web-1"):
        calc(1, [bad])
    with pytest.raises(MetricError, match="no pods returned by selector"):
        calc(1, [])


def test_unready_pods_count_as_zero_only_when_scaling_up() -> None:
    fresh = pod("new", None, phase="Pending")
    # scaling up: the pending pod is assumed idle, which damps the step (600% -> 300%)
    assert calc(2, [pod("a", 600), fresh]) == 6            # ceil(300/50 * 2)... = 6
    assert calc(2, [pod("a", 600)]) == 6                    # alone: ceil(6 * 1)
    # scaling down: unready pods are left out, nothing pretends they are busy
    assert calc(2, [pod("a", 20), fresh]) == 1


def test_missing_metrics_assumed_full_request_when_scaling_down() -> None:
    # a: 10% of request; b has no metric: assumed 100% -> (20+200)/400 = 55% -> ratio 1.1:
    # within tolerance, so no scale-down happens on a half-known picture
    assert calc(2, [pod("a", 20), pod("b", None)]) == 2


def test_cpu_of_recently_ready_pod_is_unready_until_a_full_window_passed() -> None:
    young = pod("young", 400, started=T0 - 60, ready_since=T0 - 5)   # ready 5 s ago
    with pytest.raises(MetricError, match="did not receive metrics"):
        calc(1, [young])
    settled = pod("young", 400, started=T0 - 60, ready_since=T0 - 30)
    assert calc(1, [settled]) == 4


def test_deleted_and_failed_pods_are_ignored() -> None:
    assert calc(2, [pod("a", 100), pod("b", 900, deleting=True),
                    pod("c", 900, phase="Failed")]) == 2


def test_average_value_target() -> None:
    replicas, avg, _ = resource_replicas(2, [pod("a", 300), pod("b", 300)], resource="cpu",
                                         target=100, utilization=False, now=T0)
    assert (replicas, avg) == (6, 300)


def test_scale_down_waits_for_the_stabilization_window() -> None:
    r = Recommender()
    r.recommendations.append((5, T0))
    out = r.normalize(current=5, desired=1, low=1, high=10, now=T0 + 15, behavior=None)
    assert (out.replicas, out.able_reason) == (5, "ScaleDownStabilized")
    out = r.normalize(current=5, desired=1, low=1, high=10, now=T0 + 299, behavior=None)
    assert out.replicas == 5
    out = r.normalize(current=5, desired=1, low=1, high=10, now=T0 + 316, behavior=None)
    assert (out.replicas, out.able_reason) == (1, "ReadyForNewScale")


def test_scale_up_limit_and_max_replicas() -> None:
    r = Recommender()
    out = r.normalize(current=1, desired=9, low=1, high=10, now=T0, behavior=None)
    assert (out.replicas, out.limit_reason, out.limited) == (4, "ScaleUpLimit", True)
    out = r.normalize(current=4, desired=30, low=1, high=10, now=T0 + 15, behavior=None)
    assert (out.replicas, out.limit_reason) == (8, "ScaleUpLimit")
    out = r.normalize(current=8, desired=30, low=1, high=10, now=T0 + 30, behavior=None)
    assert (out.replicas, out.limit_reason) == (10, "TooManyReplicas")
    # the window remembers the 30 above: a fresh HPA shows the minimum alone
    out = r.normalize(current=3, desired=3, low=4, high=10, now=T0 + 45, behavior=None)
    assert (out.replicas, out.able_reason) == (6, "ScaleDownStabilized")
    out = Recommender().normalize(current=3, desired=3, low=4, high=10, now=T0,
                                  behavior=None)
    assert (out.replicas, out.limit_reason) == (4, "TooFewReplicas")


def test_behavior_short_window_scales_down_after_it() -> None:
    behavior = default_behavior({"scaleDown": {"stabilizationWindowSeconds": 30}})
    r = Recommender()
    out = r.normalize(current=1, desired=5, low=1, high=10, now=T0, behavior=behavior)
    assert out.replicas == 5                    # 4 pods or 100% per 15 s: max(5, 2) = 5
    r.record_scale(1, 5, T0)
    out = r.normalize(current=5, desired=1, low=1, high=10, now=T0 + 15, behavior=behavior)
    assert (out.replicas, out.able_reason) == (5, "ScaleDownStabilized")
    out = r.normalize(current=5, desired=1, low=1, high=10, now=T0 + 46, behavior=behavior)
    assert out.replicas == 1


def test_behavior_policies_limit_the_rate() -> None:
    behavior = default_behavior({"scaleUp": {"policies": [
        {"type": "Pods", "value": 1, "periodSeconds": 60}]}})
    r = Recommender()
    out = r.normalize(current=2, desired=8, low=1, high=10, now=T0, behavior=behavior)
    assert (out.replicas, out.limit_reason) == (3, "ScaleUpLimit")
    r.record_scale(2, 3, T0)
    out = r.normalize(current=3, desired=8, low=1, high=10, now=T0 + 30, behavior=behavior)
    assert out.replicas == 3                    # one pod per 60 s, already used
    out = r.normalize(current=3, desired=8, low=1, high=10, now=T0 + 61, behavior=behavior)
    assert out.replicas == 4
    disabled = default_behavior({"scaleDown": {"selectPolicy": "Disabled"}})
    out = Recommender().normalize(current=4, desired=1, low=1, high=10, now=T0,
                                  behavior=disabled)
    assert out.replicas == 4
