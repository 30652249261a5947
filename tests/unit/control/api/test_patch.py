"""The patch flavours as pure functions: RFC 7386 merge, strategic merge with merge keys and
directives (as kubectl apply sends them), RFC 6902 JSON patch."""

from __future__ import annotations

import pytest

from control.api.patch import json_patch, merge_patch, strategic_merge_patch
from control.errors import BadRequest, Invalid


def test_merge_patch_nulls_delete_and_lists_replace() -> None:
    doc = {"a": {"b": 1, "c": 2}, "l": [1, 2]}
    out = merge_patch(doc, {"a": {"b": None, "d": 3}, "l": [3]})
    assert out == {"a": {"c": 2, "d": 3}, "l": [3]}
    assert doc == {"a": {"b": 1, "c": 2}, "l": [1, 2]}          # input untouched


def _pod_spec() -> dict:
    return {"spec": {"containers": [
        {"name": "a", "image": "x", "env": [{"name": "E1", "value": "1"}],
         "ports": [{"containerPort": 80}, {"containerPort": 81}],
         "volumeMounts": [{"mountPath": "/m", "name": "v"}]},
        {"name": "b", "image": "y"}]}}


def test_strategic_merges_lists_by_key() -> None:
    out = strategic_merge_patch(_pod_spec(), {"spec": {"containers": [
        {"name": "b", "image": "z"},
        {"name": "a", "env": [{"name": "E2", "value": "2"}],
         "ports": [{"containerPort": 81, "name": "alt"}]}]}})
    a, b = out["spec"]["containers"]
    assert b == {"name": "b", "image": "z"}
    assert a["image"] == "x" and [e["name"] for e in a["env"]] == ["E1", "E2"]
    assert a["ports"] == [{"containerPort": 80}, {"containerPort": 81, "name": "alt"}]


def test_strategic_service_ports_merge_by_port() -> None:
    svc = {"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}}
    out = strategic_merge_patch(svc, {"spec": {"ports": [{"port": 80, "targetPort": 9090}]}})
    assert out["spec"]["ports"] == [{"port": 80, "targetPort": 9090}, {"port": 443}]


def test_strategic_directives() -> None:
    doc = _pod_spec()
    out = strategic_merge_patch(doc, {"spec": {
        "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
        "containers": [{"name": "a", "$patch": "delete"}]}})
    assert [c["name"] for c in out["spec"]["containers"]] == ["b"]
    out = strategic_merge_patch(doc, {"spec": {"$setElementOrder/containers": [
        {"name": "b"}, {"name": "a"}]}})
    assert [c["name"] for c in out["spec"]["containers"]] == ["b", "a"]
    out = strategic_merge_patch(doc, {"spec": {"containers": [
        {"$patch": "replace"}, {"name": "only", "image": "i"}]}})
    assert out["spec"]["containers"] == [{"name": "only", "image": "i"}]
    out = strategic_merge_patch({"spec": {"strategy": {"type": "RollingUpdate",
                                                       "rollingUpdate": {"maxSurge": 1}}}},
                                {"spec": {"strategy": {"$retainKeys": ["type"],
                                                       "type": "Recreate"}}})
    assert out["spec"]["strategy"] == {"type": "Recreate"}
    out = strategic_merge_patch({"metadata": {"labels": {"a": "1"}}},
                                {"metadata": {"labels": {"$patch": "replace", "b": "2"}}})
    assert out["metadata"]["labels"] == {"b": "2"}
    out = strategic_merge_patch({"metadata": {"finalizers": ["x"]}},
                                {"metadata": {"finalizers": ["y", "x"]}})
    assert out["metadata"]["finalizers"] == ["x", "y"]
    out = strategic_merge_patch({"metadata": {"finalizers": ["x", "y"]}},
                                {"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}})
    assert out["metadata"]["finalizers"] == ["y"]
    out = strategic_merge_patch({"spec": {"paused": True, "replicas": 1}},
                                {"spec": {"paused": None}})
    assert out == {"spec": {"replicas": 1}}


def test_strategic_errors() -> None:
    with pytest.raises(BadRequest, match="merge key"):
        strategic_merge_patch(_pod_spec(), {"spec": {"containers": [{"image": "q"}]}})
    with pytest.raises(BadRequest, match="unknown patch directive"):
        strategic_merge_patch({}, {"spec": {"$patch": "explode"}})


def test_json_patch() -> None:
    doc = {"metadata": {"annotations": {"a": "1"}}, "spec": {"template": {"x": 1}}}
    out = json_patch(doc, [{"op": "replace", "path": "/spec/template", "value": {"y": 2}},
                           {"op": "replace", "path": "/metadata/annotations",
                            "value": {"b": "2"}}])
    assert out == {"metadata": {"annotations": {"b": "2"}}, "spec": {"template": {"y": 2}}}
    with pytest.raises(Invalid, match="test operation failed"):
        json_patch(doc, [{"op": "test", "path": "/spec/template/x", "value": 2}])
    with pytest.raises(BadRequest, match="could not be applied"):
        json_patch(doc, [{"op": "remove", "path": "/nope/deeper"}])
    with pytest.raises(BadRequest, match="JSON array"):
        json_patch(doc, {"op": "add"})


def test_endpoint_ports_are_atomic() -> None:
    eps = {"ports": [{"name": "https", "port": 6443}], "endpoints": [{"addresses": ["a"]}]}
    out = strategic_merge_patch(eps, {"ports": [{"name": "https", "port": 7443}]})
    assert out["ports"] == [{"name": "https", "port": 7443}]
    sub = {"subsets": [{"ports": [{"port": 1}]}]}
    out = strategic_merge_patch(sub, {"subsets": [{"ports": [{"port": 2}]}]})
    assert out == {"subsets": [{"ports": [{"port": 2}]}]}
