"""The mesh kinds through admission: kube-style 422 causes with field paths, warnings for
unknown fields, the served resource table and `kubectl get` columns."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from meshcrds import admit, info, table  # type: ignore[import-not-found]

from control.errors import Invalid
from control.models.meshgateway import HTTPRoute, parse_duration
from control.models.meshistio import VirtualService
from control.models.meshkinds import MESH_MODELS

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _vs(http: list[dict[str, Any]], hosts: list[str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "reviews", "namespace": "default",
                         "creationTimestamp": "2026-01-01T11:55:00Z"},
            "spec": {"hosts": ["reviews"] if hosts is None else hosts, "http": http}}


def _route(rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "split", "namespace": "default",
                         "creationTimestamp": "2026-01-01T11:00:00Z"},
            "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "echo"}],
                     "hostnames": ["echo.example"], "rules": rules}}


def _causes(resource: str, obj: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(Invalid) as exc:
        admit(resource, obj)
    return {c.field: c.message for c in exc.value.causes}


def test_served_kinds_and_short_names() -> None:
    assert info("virtualservices").short_names == ("vs",)
    assert info("destinationrules").short_names == ("dr",)
    assert info("httproutes").api_version == "gateway.networking.k8s.io/v1"
    assert info("gatewayclasses").namespaced is False
    assert {info(p).group for p in ("gateways", "referencegrants", "httproutes")} == {
        "gateway.networking.k8s.io"}
    assert MESH_MODELS["httproutes"] is HTTPRoute


def test_virtualservice_causes_name_the_field() -> None:
    causes = _causes("virtualservices", _vs([{
        "route": [{"destination": {"host": "reviews", "subset": "v1"}, "weight": 80},
                  {"destination": {"host": "reviews"}, "weight": -1}],
        "timeout": "1x", "fault": {"abort": {"httpStatus": 700}}}]))
    assert causes == {
        "spec.http[0].route[1].weight": "Invalid value: -1: should be greater than or equal to 0",
        "spec.http[0].timeout": 'Invalid value: "1x": must be a duration: a number and a unit, '
                                "like 10s, 1m30s or 500ms",
        "spec.http[0].fault.abort.httpStatus": "Invalid value: 700: should be less than or "
                                               "equal to 599"}


def test_invalid_is_422_with_kind_and_group_in_message() -> None:
    with pytest.raises(Invalid) as exc:
        admit("virtualservices", _vs([{"route": []}], hosts=[]))
    assert exc.value.code == 422
    assert str(exc.value).startswith('VirtualService.networking.istio.io "reviews" is invalid')


def test_string_match_needs_exactly_one() -> None:
    causes = _causes("virtualservices", _vs([{
        "match": [{"uri": {"prefix": "/a", "exact": "/a"}}],
        "route": [{"destination": {"host": "reviews"}}]}]))
    assert list(causes) == ["spec.http[0].match[0].uri"]   # Istio's schema says it (oneOf)
    assert "must validate one and only one schema (oneOf)" in causes["spec.http[0].match[0].uri"]


def test_unknown_fields_are_pruned_as_by_a_structural_schema() -> None:
    obj, warnings = admit("virtualservices", _vs([{
        "route": [{"destination": {"host": "reviews"}, "wieght": 5}]}]))
    assert warnings == []   # the API layer warns (fieldValidation=Warn) or refuses (Strict)
    assert obj["spec"]["http"][0]["route"][0] == {"destination": {"host": "reviews"}}


def test_httproute_causes() -> None:
    causes = _causes("httproutes", _route([{
        "matches": [{"path": {"type": "Prefixx", "value": "/"}},
                    {"method": "FOO", "headers": [{"name": "x"}]}],
        "backendRefs": [{"name": "v1", "port": 80, "weight": 2_000_000}, {"name": "v2"}]}]))
    assert causes["spec.rules[0].matches[0].path.type"].startswith(
        'Unsupported value: "Prefixx": supported values: "Exact", "PathPrefix"')
    assert causes["spec.rules[0].matches[1].headers[0].value"] == "Required value"
    assert causes["spec.rules[0].matches[1].method"].startswith('Unsupported value: "FOO"')
    assert causes["spec.rules[0].backendRefs[0].weight"] == (
        "Invalid value: 2000000: spec.rules[0].backendRefs[0].weight in body should be less "
        "than or equal to 1000000")
    assert "Must have port for Service reference" in causes["spec.rules[0].backendRefs[1]"]


def test_httproute_rule_limit_and_defaults() -> None:
    causes = _causes("httproutes", _route([{}] * 17))
    assert list(causes) == ["spec.rules"]
    route = HTTPRoute.model_validate(admit("httproutes", _route([{}]))[0])
    assert route.spec is not None
    match = route.spec.rules[0].matches[0]
    assert match.path is not None and (match.path.type, match.path.value) == ("PathPrefix", "/")
    assert route.spec.parent_refs[0].is_service


def test_destinationrule_causes() -> None:
    dr = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
          "metadata": {"name": "reviews", "namespace": "default"},
          "spec": {"host": "reviews", "subsets": [{"name": "v1"}, {"name": "v1"}]}}
    assert "duplicate subset name 'v1'" in _causes("destinationrules", dr)["spec"]
    dr["spec"] = {"trafficPolicy": {"loadBalancer": {"simple": "FOO"},
                                    "outlierDetection": {"consecutive5xxErrors": "x",
                                                         "maxEjectionPercent": 101}}}
    causes = _causes("destinationrules", dr)
    assert causes["spec.host"] == "Required value"
    assert causes["spec.trafficPolicy.loadBalancer.simple"].startswith('Unsupported value: "FOO"')
    assert causes["spec.trafficPolicy.outlierDetection.consecutive5xxErrors"] == (
        'Invalid value: "x": spec.trafficPolicy.outlierDetection.consecutive5xxErrors in body '
        'must be of type integer: "string"')
    assert "101" in causes["spec.trafficPolicy.outlierDetection.maxEjectionPercent"]


def test_missing_spec_is_required() -> None:
    assert _causes("destinationrules", {"metadata": {"name": "x", "namespace": "d"}}) == {
        "spec": "Required value"}


def test_kubectl_columns() -> None:
    vs = admit("virtualservices", _vs([{"route": [{"destination": {"host": "reviews"}}]}]))[0]
    t = table("virtualservices", [vs], now=NOW)
    assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "Gateways", "Hosts", "Age"]
    assert t["rows"][0]["cells"] == ["reviews", None, '["reviews"]', "5m"]
    t = table("httproutes", [admit("httproutes", _route([{}]))[0]], now=NOW)
    assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "Hostnames", "Age"]
    assert t["rows"][0]["cells"] == ["split", '["echo.example"]', "60m"]
    assert [c["name"] for c in table("destinationrules", [], now=NOW)["columnDefinitions"]] == [
        "Name", "Host", "Age"]


def test_durations() -> None:
    assert parse_duration("1m30s") == 90
    assert parse_duration("500ms") == pytest.approx(0.5)
    assert parse_duration("1.5s") == 1.5
    for bad in ("", "10", "s", "1d", "1s2"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_vs_model_reads_istio_names() -> None:
    vs = VirtualService.model_validate(_vs([{
        "route": [{"destination": {"host": "r"}}],
        "retries": {"attempts": 3, "perTryTimeout": "2s", "retryOn": "5xx"},
        "mirrorPercentage": {"value": 10}}]))
    assert vs.spec is not None
    r = vs.spec.http[0]
    assert r.retries is not None and r.retries.per_try_timeout == "2s"
    assert r.mirror_percentage is not None and r.mirror_percentage.value == 10


def test_gateways_of_another_class_are_stored_with_a_warning() -> None:
    gw = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
          "metadata": {"name": "gw", "namespace": "default"},
          "spec": {"gatewayClassName": "knet", "listeners": [
              {"name": "http", "port": 80, "protocol": "HTTP",
               "allowedRoutes": {"namespaces": {"from": "All"}}}]}}
    _, warnings = admit("gateways", gw)
    assert warnings == []   # knet's class is served, allowedRoutes is known
    gw["spec"]["gatewayClassName"] = "istio"  # type: ignore[index]
    _, warnings = admit("gateways", gw)
    assert warnings and "use gatewayClassName: knet" in warnings[0]
    gw["spec"] = {"gatewayClassName": "knet", "listeners": []}
    assert list(_causes("gateways", gw)) == ["spec.listeners"]


def test_gateway_columns_read_conditions_by_type() -> None:
    """The Gateway API CRDs' columns filter conditions by type (`[?(@.type=="Accepted")]`)
    and take the first address, as kube-apiserver's CRD table convertor does."""
    gc = {"metadata": {"name": "knet", "creationTimestamp": "2026-01-01T11:00:00Z"},
          "spec": {"controllerName": "knet.dev/gateway-controller"},
          "status": {"conditions": [{"type": "Other", "status": "False"},
                                    {"type": "Accepted", "status": "True"}]}}
    t = table("gatewayclasses", [gc], now=NOW)
    assert [c["name"] for c in t["columnDefinitions"]] == [
        "Name", "Controller", "Accepted", "Age", "Description"]
    assert t["rows"][0]["cells"] == ["knet", "knet.dev/gateway-controller", "True", "60m", None]
    gw = {"metadata": {"name": "web", "creationTimestamp": "2026-01-01T11:00:00Z"},
          "spec": {"gatewayClassName": "knet"},
          "status": {"addresses": [{"value": "172.18.0.2"}, {"value": "172.18.0.3"}],
                     "conditions": [{"type": "Programmed", "status": "True"}]}}
    t = table("gateways", [gw], now=NOW)
    assert t["rows"][0]["cells"] == ["web", "knet", "172.18.0.2", "True", "60m"]
