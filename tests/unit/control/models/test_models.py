"""The pydantic wire contract (control/models/meta.py) that every mesh kind inherits:
Kubernetes names on the wire, snake_case in Python, unknown fields kept exactly."""

from __future__ import annotations

from typing import Any

import pytest

from control.crds import mesh_crds
from control.models.meshgateway import HTTPRoute
from control.models.meshistio import DestinationRule, VirtualService
from control.models.meshkinds import MESH_MODELS, MESH_RESOURCES
from control.models.meta import ObjectMeta, OwnerReference, TopLevel, wire_alias
from control.models.resources import RESOURCES

VS: dict[str, Any] = {
    "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
    "metadata": {"name": "reviews", "namespace": "default", "labels": {"app": "reviews"},
                 "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                                      "uid": "u1", "controller": True}],
                 "someFutureMeta": {"x": 1}},
    "spec": {"hosts": ["reviews"], "futureSpecField": [1, 2],
             "http": [{"route": [{"destination": {"host": "reviews", "subset": "v1"},
                                  "weight": 100}],
                       "retries": {"attempts": 3, "perTryTimeout": "2s"}}]},
}


def test_typed_access_in_python_names() -> None:
    vs = VirtualService.model_validate(VS)
    assert vs.spec and vs.spec.hosts == ["reviews"]
    assert vs.spec.http[0].retries and vs.spec.http[0].retries.per_try_timeout == "2s"
    ref = vs.metadata.controller_ref()
    assert ref and ref.kind == "ConfigMap" and ref.uid == "u1"
    assert vs.key == "default/reviews"


def _keeps(out: Any, given: Any) -> bool:
    """Everything `given` says is in `out`, unchanged (`out` may add defaults)."""
    if isinstance(given, dict):
        return isinstance(out, dict) and all(k in out and _keeps(out[k], v)
                                             for k, v in given.items())
    if isinstance(given, list):
        return isinstance(out, list) and len(out) == len(given) and all(
            _keeps(o, g) for o, g in zip(out, given, strict=True))
    return bool(out == given)


def test_round_trips_unknown_fields() -> None:
    out = VirtualService.model_validate(VS).to_wire()
    assert _keeps(out, VS), out
    assert out["spec"]["futureSpecField"] == [1, 2]
    assert out["metadata"]["someFutureMeta"] == {"x": 1}


@pytest.mark.parametrize("resource", sorted(MESH_MODELS))
def test_every_mesh_model_round_trips_unknown_fields(resource: str) -> None:
    model = MESH_MODELS[resource]
    obj = {**model().to_wire(), "metadata": {"name": "a", "newThing": [1]},
           "fancyTopLevel": {"nested": {"deep": True}}}
    assert obj["kind"] == model().kind and obj["apiVersion"]
    assert model.model_validate(obj).to_wire() == obj


def test_every_mesh_model_is_a_kind_of_an_installed_crd() -> None:
    installed = {(c["spec"]["names"]["plural"], c["spec"]["group"]) for c in mesh_crds()}
    assert {(r.plural, r.group) for r in MESH_RESOURCES} == installed
    assert set(MESH_MODELS) == {r.plural for r in MESH_RESOURCES}
    assert not installed & {(r.plural, r.group) for r in RESOURCES}   # CRDs, not built in


def test_snake_case_in_python_camel_case_on_the_wire() -> None:
    assert wire_alias("cluster_ips") == "clusterIPs"
    assert wire_alias("pod_cidr") == "podCIDR"
    assert wire_alias("continue_") == "continue"
    assert wire_alias("system_uuid") == "systemUUID"
    meta = ObjectMeta(name="p", namespace="default", owner_references=[OwnerReference(
        api_version="apps/v1", kind="ReplicaSet", name="r", uid="u", controller=True,
        block_owner_deletion=True)])
    assert TopLevel(api_version="v1", kind="X", metadata=meta).to_wire() == {
        "apiVersion": "v1", "kind": "X",
        "metadata": {"name": "p", "namespace": "default",
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                          "name": "r", "uid": "u", "controller": True,
                                          "blockOwnerDeletion": True}]}}


def test_assignment_shows_on_the_wire() -> None:
    route = HTTPRoute.model_validate({"metadata": {"name": "r"}, "spec": {}})
    route.metadata.labels = {"a": "b"}
    assert route.to_wire()["metadata"]["labels"] == {"a": "b"}


def test_nested_camel_case_fields() -> None:
    dr = DestinationRule.model_validate({
        "metadata": {"name": "reviews"},
        "spec": {"host": "reviews", "trafficPolicy": {
            "outlierDetection": {"consecutive5xxErrors": 1, "baseEjectionTime": "30s"}}}})
    assert dr.spec and dr.spec.traffic_policy and dr.spec.traffic_policy.outlier_detection
    wire = dr.to_wire()
    assert wire["spec"]["trafficPolicy"]["outlierDetection"]["baseEjectionTime"] == "30s"
