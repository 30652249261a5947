"""CRD validation rules (x-kubernetes-validations, CEL) over HTTP, as kube-apiserver answers:
the examples of the Kubernetes task page "Extend the Kubernetes API with
CustomResourceDefinitions" (Validation rules, Transition rules) on a user CRD, the Gateway
API's own CEL test cases (kubernetes-sigs/gateway-api pkg/test/cel) and Istio's rules on the
CRDs knet installs at start, each asserting the upstream message."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
import test_crd
from aiohttp.test_utils import TestClient

CRDS, CTS = test_crd.CRDS, test_crd.CTS
api = test_crd.api          # the API server fixture (a namespace "default", mesh CRDs)

GW = "/apis/gateway.networking.k8s.io/v1"
GWS, ROUTES = f"{GW}/namespaces/default/gateways", f"{GW}/namespaces/default/httproutes"
# the docs' CronTab with its three rules (two on spec, the transition rule on spec.image)
CRONTAB = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "crontabs.stable.example.com"},
    "spec": {"group": "stable.example.com", "scope": "Namespaced",
             "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                 "openAPIV3Schema": {"type": "object", "properties": {"spec": {
                     "type": "object",
                     "x-kubernetes-validations": [
                         {"rule": "self.minReplicas <= self.replicas",
                          "message": "replicas should be greater than or equal to "
                                     "minReplicas."},
                         {"rule": "self.replicas <= self.maxReplicas",
                          "message": "replicas should be smaller than or equal to "
                                     "maxReplicas."}],
                     "properties": {
                         "image": {"type": "string", "x-kubernetes-validations": [
                             {"rule": "self == oldSelf", "message": "Value is immutable"}]},
                         "minReplicas": {"type": "integer"},
                         "replicas": {"type": "integer"},
                         "maxReplicas": {"type": "integer"}},
                     "required": ["minReplicas", "replicas", "maxReplicas"]}}}}}]}}


async def _crd(api: TestClient, crd: dict[str, Any], path: str) -> None:
    assert (await api.post(CRDS, json=crd)).status == 201
    for _ in range(100):
        if (await api.get(path)).status == 200:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} never served")


def crontab(name: str, **spec: object) -> dict[str, Any]:
    return {"apiVersion": "stable.example.com/v1", "kind": "CronTab",
            "metadata": {"name": name}, "spec": spec}


async def test_the_docs_validation_rules_on_create(api: TestClient) -> None:
    await _crd(api, CRONTAB, CTS)
    r = await api.post(CTS, json=crontab("ok", minReplicas=0, replicas=5, maxReplicas=10))
    assert r.status == 201, await r.text()
    r = await api.post(CTS, json=crontab("my-new-cron-object", minReplicas=0, replicas=20,
                                         maxReplicas=10))
    body = await r.json()
    assert r.status == 422 and body["reason"] == "Invalid"
    assert body["message"] == (
        'CronTab.stable.example.com "my-new-cron-object" is invalid: spec: Invalid value: '
        '"object": replicas should be smaller than or equal to maxReplicas.')
    assert body["details"]["causes"] == [{
        "reason": "FieldValueInvalid", "field": "spec",
        "message": 'Invalid value: "object": replicas should be smaller than or equal to '
                   'maxReplicas.'}]
    # both rules broken: both listed; a schema failure blocks the rules, as kube says
    r = await api.post(CTS, json=crontab("two", minReplicas=30, replicas=20, maxReplicas=10))
    assert [c["message"] for c in (await r.json())["details"]["causes"]] == [
        'Invalid value: "object": replicas should be greater than or equal to minReplicas.',
        'Invalid value: "object": replicas should be smaller than or equal to maxReplicas.']
    r = await api.post(CTS, json=crontab("typed", minReplicas="x", replicas=20, maxReplicas=1))
    assert (await r.json())["message"].endswith(
        '<nil>: Invalid value: "null": some validation rules were not checked because the '
        'object was invalid; correct the existing errors to complete validation]')


async def test_the_docs_transition_rule_on_update(api: TestClient) -> None:
    await _crd(api, CRONTAB, CTS)
    obj = crontab("imm", image="nginx:1", minReplicas=0, replicas=1, maxReplicas=2)
    assert (await api.post(CTS, json=obj)).status == 201     # no old value: not evaluated
    stored = await (await api.get(f"{CTS}/imm")).json()
    same = copy.deepcopy(stored)
    same["spec"]["replicas"] = 2
    r = await api.put(f"{CTS}/imm", json=same)
    assert r.status == 200, await r.text()
    changed = await r.json()
    changed["spec"]["image"] = "nginx:2"
    r = await api.put(f"{CTS}/imm", json=changed)
    body = await r.json()
    assert r.status == 422
    assert body["message"] == ('CronTab.stable.example.com "imm" is invalid: spec.image: '
                               'Invalid value: "string": Value is immutable')
    r = await api.patch(f"{CTS}/imm", json={"spec": {"image": "other"}},
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status == 422 and "Value is immutable" in (await r.json())["message"]


async def test_message_expression_reason_field_path_and_defaults(api: TestClient) -> None:
    crd = copy.deepcopy(CRONTAB)
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["x-kubernetes-validations"] = [
        {"rule": "self.replicas <= self.maxReplicas",
         "messageExpression": "'replicas exceeded max limit of ' + string(self.maxReplicas)"},
        {"rule": "self.minReplicas >= 0", "fieldPath": ".minReplicas",
         "reason": "FieldValueForbidden", "message": "must not be negative"},
        {"rule": "self.image.startsWith('registry.example/')"}]
    await _crd(api, crd, CTS)
    r = await api.post(CTS, json=crontab("m", image="nginx", minReplicas=-1, replicas=20,
                                         maxReplicas=10))
    causes = (await r.json())["details"]["causes"]
    assert causes == [
        {"reason": "FieldValueInvalid", "field": "spec",
         "message": 'Invalid value: "object": replicas exceeded max limit of 10'},
        {"reason": "FieldValueForbidden", "field": "spec.minReplicas",
         "message": "Forbidden: must not be negative"},
        {"reason": "FieldValueInvalid", "field": "spec",
         "message": 'Invalid value: "object": failed rule: '
                    "self.image.startsWith('registry.example/')"}]
    # a field the rule reads is absent: cel-go's runtime error
    r = await api.post(CTS, json=crontab("n", minReplicas=0, replicas=1, maxReplicas=2))
    assert (await r.json())["message"].endswith(
        'spec: Invalid value: "object": no such key: image evaluating rule: '
        "self.image.startsWith('registry.example/')")


def gateway(*listeners: dict[str, Any], name: str = "gw") -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": name},
            "spec": {"gatewayClassName": "knet", "listeners": list(listeners)}}


def route(*rules: dict[str, Any], name: str = "r") -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name},
            "spec": {"parentRefs": [{"name": "gw"}], "rules": list(rules)}}


BACKEND = {"name": "web", "port": 80}
CERT = {"certificateRefs": [{"name": "foo"}]}
# (listeners, field, upstream message) from gateway_test.go, which checks that the message is
# in the error: where a field the rule reads is absent, cel-go's error names the rule's message
GATEWAY_CASES = [
    ([{"name": "http", "protocol": "HTTP", "port": 8080, "tls": {}}], "spec.listeners",
     "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']"),
    ([{"name": "https", "protocol": "HTTPS", "port": 8080,
       "tls": {"mode": "Passthrough", **CERT}}], "spec.listeners",
     "tls mode must be Terminate for protocol HTTPS"),
    ([{"name": "tcp", "protocol": "TCP", "port": 8080, "hostname": "foo"}], "spec.listeners",
     "hostname must not be specified for protocols ['TCP', 'UDP']"),
    ([{"name": "https", "protocol": "HTTPS", "port": 8443, "tls": {"mode": "Terminate"}}],
     "spec.listeners[0].tls", ("no such key: certificateRefs evaluating rule: "
                               "certificateRefs or options must be specified when mode is "
                               "Terminate")),
    ([{"name": "http", "protocol": "HTTP", "port": 80},
      {"name": "http", "protocol": "HTTP", "port": 8000}], "spec.listeners",
     "Listener name must be unique within the Gateway"),
    ([{"name": "foo", "protocol": "HTTP", "port": 80},
      {"name": "bar", "protocol": "HTTP", "port": 80}], "spec.listeners",
     "Combination of port, protocol and hostname must be unique for each listener"),
]


@pytest.mark.parametrize(("listeners", "field", "message"), GATEWAY_CASES)
async def test_gateway_api_listener_rules(api: TestClient, listeners: list[dict[str, Any]],
                                          field: str, message: str) -> None:
    r = await api.post(GWS, json=gateway(*listeners))
    body = await r.json()
    assert r.status == 422, body
    assert {"reason": "FieldValueInvalid", "field": field,
            "message": f'Invalid value: "{"object" if field.endswith("tls") else "array"}": '
                       f"{message}"} in body["details"]["causes"], body
    assert body["message"].startswith('Gateway.gateway.networking.k8s.io "gw" is invalid: ')


async def test_gateway_api_valid_listeners_pass(api: TestClient) -> None:
    r = await api.post(GWS, json=gateway(
        {"name": "foo", "protocol": "HTTP", "port": 80, "hostname": "foo.com"},
        {"name": "bar", "protocol": "HTTPS", "port": 80, "hostname": "foo.com", "tls": CERT}))
    assert r.status == 201, await r.text()


async def test_httproute_redirect_with_backend_refs(api: TestClient) -> None:
    r = await api.post(ROUTES, json=route({
        "filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}}],
        "backendRefs": [BACKEND]}))
    body = await r.json()
    assert r.status == 422
    assert body["message"] == (
        'HTTPRoute.gateway.networking.k8s.io "r" is invalid: spec.rules[0]: Invalid value: '
        '"object": RequestRedirect filter must not be used together with backendRefs')


async def test_httproute_replace_prefix_match_needs_one_path_prefix(api: TestClient) -> None:
    rewrite = {"type": "URLRewrite", "urlRewrite": {"path": {
        "type": "ReplacePrefixMatch", "replacePrefixMatch": "/foo"}}}
    r = await api.post(ROUTES, json=route({
        "matches": [{"path": {"type": "Exact", "value": "/bar"}}], "filters": [rewrite],
        "backendRefs": [BACKEND]}))
    assert "spec.rules[0]: Invalid value: \"object\": When using URLRewrite filter with " \
        "path.replacePrefixMatch, exactly one PathPrefix match must be specified" in (
            await r.json())["message"]
    r = await api.post(ROUTES, json=route({
        "matches": [{"path": {"type": "PathPrefix", "value": "/bar"}}], "filters": [rewrite],
        "backendRefs": [BACKEND]}, name="ok"))
    assert r.status == 201, await r.text()


async def test_httproute_path_must_start_with_slash(api: TestClient) -> None:
    r = await api.post(ROUTES, json=route({
        "matches": [{"path": {"type": "PathPrefix", "value": "foo"}}],
        "backendRefs": [BACKEND]}))
    body = await r.json()
    assert {"reason": "FieldValueInvalid", "field": "spec.rules[0].matches[0].path",
            "message": 'Invalid value: "object": value must be an absolute path and start '
                       "with '/' when type one of ['Exact', 'PathPrefix']"} in \
        body["details"]["causes"], body


async def test_gatewayclass_controller_name_is_immutable(api: TestClient) -> None:
    path = f"{GW}/gatewayclasses"
    gc = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
          "metadata": {"name": "other"}, "spec": {"controllerName": "example.com/a"}}
    assert (await api.post(path, json=gc)).status == 201
    r = await api.patch(f"{path}/other", json={"spec": {"controllerName": "example.com/b"}},
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status == 422
    assert (await r.json())["message"] == (
        'GatewayClass.gateway.networking.k8s.io "other" is invalid: spec.controllerName: '
        'Invalid value: "string": Value is immutable')


async def test_istio_rules(api: TestClient) -> None:
    sec = "/apis/security.istio.io/v1/namespaces/default"
    r = await api.post(f"{sec}/authorizationpolicies", json={
        "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": "both"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                 "name": "gw"}]}})
    assert (await r.json())["message"] == (
        'AuthorizationPolicy.security.istio.io "both" is invalid: spec: Invalid value: '
        '"object": only one of targetRefs or selector can be set')
    r = await api.post(f"{sec}/peerauthentications", json={
        "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": "p"}, "spec": {"portLevelMtls": {"8080": {"mode": "STRICT"}}}})
    assert (await r.json())["message"] == (
        'PeerAuthentication.security.istio.io "p" is invalid: spec: Invalid value: '
        '"object": portLevelMtls requires selector')
    r = await api.post("/apis/networking.istio.io/v1/namespaces/default/destinationrules",
                       json={"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                             "metadata": {"name": "d"}, "spec": {"host": "web", "trafficPolicy": {
                                 "outlierDetection": {"interval": "500us"}}}})
    assert 'spec.trafficPolicy.outlierDetection.interval: Invalid value: "string": must be ' \
        "a valid duration greater than 1ms" in (await r.json())["message"]
