"""Node predicates shared by the scheduler and the DaemonSet controller: nodeSelector,
required node affinity (label expressions and matchFields metadata.name), taints."""

from __future__ import annotations

from control.controllers.nodeaffinity import required_affinity_matches, untolerated_taint


def node(name: str, **labels: str) -> dict:
    return {"metadata": {"name": name, "labels": labels}}


def affinity(*terms: dict) -> dict:
    return {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": list(terms)}}}}


def test_match_fields_pins_to_one_node_by_name() -> None:
    spec = affinity({"matchFields": [{"key": "metadata.name", "operator": "In",
                                      "values": ["node-2"]}]})
    assert required_affinity_matches(spec, node("node-2"))
    assert not required_affinity_matches(spec, node("node-1"))
    other = affinity({"matchFields": [{"key": "metadata.namespace", "operator": "In",
                                       "values": ["node-2"]}]})
    assert not required_affinity_matches(other, node("node-2"))   # only metadata.name


def test_expressions_terms_are_ored_and_requirements_anded() -> None:
    spec = affinity(
        {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]},
                              {"key": "cores", "operator": "Gt", "values": ["4"]}]},
        {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]})
    assert required_affinity_matches(spec, node("a", disk="ssd", cores="8"))
    assert not required_affinity_matches(spec, node("b", disk="ssd", cores="2"))
    assert required_affinity_matches(spec, node("c", gpu="yes"))
    assert not required_affinity_matches(spec, node("d"))
    assert not required_affinity_matches(affinity({}), node("e"))        # empty term: nothing
    assert required_affinity_matches({"nodeSelector": {"disk": "ssd"}}, node("f", disk="ssd"))
    assert not required_affinity_matches({"nodeSelector": {"disk": "ssd"}}, node("g"))
    not_in = affinity({"matchExpressions": [{"key": "zone", "operator": "NotIn",
                                             "values": ["a"]}]})
    assert required_affinity_matches(not_in, node("h"))
    assert not required_affinity_matches(not_in, node("i", zone="a"))


def test_untolerated_taints_by_effect() -> None:
    taints = [{"key": "dedicated", "value": "db", "effect": "NoSchedule"},
              {"key": "soft", "effect": "PreferNoSchedule"}]
    assert untolerated_taint(taints, [])["key"] == "dedicated"
    assert untolerated_taint(taints, [{"key": "dedicated", "value": "db"}]) is None
    assert untolerated_taint(taints, [{"key": "dedicated", "value": "web"}]) is not None
    assert untolerated_taint(taints, [{"operator": "Exists"}]) is None
    assert untolerated_taint(taints, [{"key": "dedicated", "operator": "Exists",
                                       "effect": "NoExecute"}]) is not None
    assert untolerated_taint(taints, [], ("NoExecute",)) is None
