"""The pure rollout arithmetic: template hashing and normalisation, maxSurge/maxUnavailable
rounding, and how far each step may scale."""

from __future__ import annotations

from control.controllers import rollout as ro


def d(replicas: int, surge, unavail) -> dict:
    return {"spec": {"replicas": replicas, "strategy": {"type": "RollingUpdate", "rollingUpdate": {
        "maxSurge": surge, "maxUnavailable": unavail}}}}


def rs(name: str, replicas: int, available: int, revision: int = 1) -> dict:
    return {"metadata": {"name": name, "annotations": {ro.REVISION: str(revision)}},
            "spec": {"replicas": replicas}, "status": {"availableReplicas": available}}


def test_hash_ignores_empty_values_and_hash_label() -> None:
    a = {"metadata": {"labels": {"app": "web"}},
         "spec": {"containers": [{"name": "c", "image": "x"}]}}
    b = {"metadata": {"creationTimestamp": None, "labels": {"app": "web", ro.HASH_LABEL: "abc"}},
         "spec": {"containers": [{"name": "c", "image": "x", "resources": {}}]}}
    assert ro.template_hash(a) == ro.template_hash(b)
    assert ro.same_template(a, b)
    c = {"metadata": {"labels": {"app": "web"}},
         "spec": {"containers": [{"name": "c", "image": "y"}]}}
    assert ro.template_hash(a) != ro.template_hash(c)
    assert ro.template_hash(a) != ro.template_hash(a, collision_count=1)
    assert set(ro.template_hash(a)) <= set("bcdfghjklmnpqrstvwxz2456789")


def test_percentages_round_like_kubernetes() -> None:
    assert ro.resolve_surge_unavailable(d(10, "25%", "25%")) == (3, 2)    # up / down
    assert ro.resolve_surge_unavailable(d(1, "25%", "25%")) == (1, 0)
    assert ro.resolve_surge_unavailable(d(3, 0, 0)) == (0, 1)              # never stuck
    assert ro.resolve_surge_unavailable({"spec": {"replicas": 4}}) == (1, 1)  # defaults


def test_new_rs_scales_up_within_surge() -> None:
    dep = d(4, 1, 1)
    old, new = rs("old", 4, 4), rs("new", 0, 0, 2)
    assert ro.new_rs_target(dep, new, [old, new]) == 1
    assert ro.new_rs_target(dep, rs("new", 5, 0), [rs("new", 5, 0)]) == 4   # scale down


def test_old_rs_scale_down_keeps_min_available() -> None:
    dep = d(4, 1, 1)
    old, new = rs("old", 4, 4), rs("new", 1, 0, 2)
    assert ro.old_rs_scale_down(dep, new, [old], [old, new]) == {"old": 3}
    # the new pod not yet available: nothing more may go
    old, new = rs("old", 3, 3), rs("new", 2, 0, 2)
    assert ro.old_rs_scale_down(dep, new, [old], [old, new]) == {"old": 3}
    # unavailable old pods go first, even below the healthy budget
    old, new = rs("old", 4, 2), rs("new", 1, 1, 2)
    assert ro.old_rs_scale_down(dep, new, [old], [old, new]) == {"old": 2}


def test_proportional_scaling_keeps_the_ratio() -> None:
    dep = d(8, 1, 1)
    old = rs("old", 3, 3, 1)
    new = rs("new", 2, 0, 2)
    for r in (old, new):
        r["metadata"]["annotations"].update({ro.DESIRED_REPLICAS: "4", ro.MAX_REPLICAS: "5"})
    assert ro.is_scaling_event(dep, [old, new])
    assert ro.proportional_targets(dep, [old, new]) == {"old": 5, "new": 4}     # 9 = 8 + surge
    down = d(2, 1, 1)
    assert ro.proportional_targets(down, [old, new]) == {"old": 2, "new": 1}
    assert not ro.is_scaling_event(d(4, 1, 1), [old, new])
