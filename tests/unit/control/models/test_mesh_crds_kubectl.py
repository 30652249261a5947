"""The mesh kinds as kubectl users of a cluster with the Gateway API and Istio installed see
them: CustomResourceDefinitions from the official definitions (`kubectl get crd`,
`kubectl explain` with the upstream text), the upstream printer columns, the status
subresource, and knet's semantic checks as 422s next to the schema's."""

from __future__ import annotations

import json
from typing import Any

REVIEWS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: default
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 50
    - destination:
        host: reviews
        subset: v3
      weight: 50
"""


async def test_the_official_crds_are_installed_and_established(run: Any) -> None:
    out = (await run("get", "crd", "-o", "json")).out
    crds = {c["metadata"]["name"]: c for c in json.loads(out)["items"]}
    assert set(crds) >= {
        "gatewayclasses.gateway.networking.k8s.io", "gateways.gateway.networking.k8s.io",
        "httproutes.gateway.networking.k8s.io", "referencegrants.gateway.networking.k8s.io",
        "virtualservices.networking.istio.io", "destinationrules.networking.istio.io",
        "peerauthentications.security.istio.io", "authorizationpolicies.security.istio.io"}
    route = crds["httproutes.gateway.networking.k8s.io"]
    assert route["metadata"]["annotations"]["gateway.networking.k8s.io/bundle-version"] == \
        "v1.6.1"
    assert {c["type"]: c["status"] for c in route["status"]["conditions"]} == {
        "NamesAccepted": "True", "Established": "True"}
    rows = (await run("api-resources", "--api-group=networking.istio.io")).rows
    assert ["virtualservices", "vs", "networking.istio.io/v1", "true", "VirtualService"] in rows


async def test_explain_reads_the_upstream_schema(run: Any) -> None:
    result = await run("explain", "httproutes.spec.rules.backendRefs.weight")
    assert result.code == 0, result.err
    assert "Weight specifies the proportion of requests forwarded" in result.out
    result = await run("explain", "virtualservices.spec.http.fault")
    assert result.code == 0, result.err
    assert "Fault injection policy to apply on HTTP traffic" in result.out


async def test_istio_docs_yaml_applies_with_upstream_columns_and_status(run: Any) -> None:
    result = await run("apply", "-f", "-", stdin=REVIEWS)
    assert result.code == 0, result.err
    assert "virtualservice.networking.istio.io/reviews created" in result.out
    rows = (await run("get", "vs", "-n", "default")).rows
    assert rows[0] == ["NAME", "GATEWAYS", "HOSTS", "AGE"]
    assert rows[1][:2] == ["reviews", '["reviews"]']
    # older served versions read the same object (conversion None)
    got = json.loads((await run("get", "virtualservices.v1beta1.networking.istio.io",
                                "reviews", "-n", "default", "-o", "json")).out)
    assert got["apiVersion"] == "networking.istio.io/v1beta1"
    # status is a subresource: only the status endpoint writes it
    status = '{"status":{"observedGeneration":1}}'
    result = await run("patch", "vs", "reviews", "-n", "default", "--type=merge", "-p", status)
    assert result.code == 0, result.err
    got = json.loads((await run("get", "vs", "reviews", "-n", "default", "-o", "json")).out)
    assert "observedGeneration" not in got.get("status", {})
    result = await run("patch", "vs", "reviews", "-n", "default", "--type=merge",
                       "--subresource=status", "-p", status)
    assert result.code == 0, result.err
    got = json.loads((await run("get", "vs", "reviews", "-n", "default", "-o", "json")).out)
    assert got["status"]["observedGeneration"] == 1


async def test_schema_and_semantic_errors_are_one_422(run: Any) -> None:
    bad = REVIEWS.replace("weight: 50\n    - destination", "weight: fifty\n    - destination")
    bad = bad.replace("  - route:", "  - match:\n    - uri:\n        regex: '(unclosed'\n"
                      "    route:")
    result = await run("apply", "-f", "-", stdin=bad)
    assert result.code == 1
    assert 'The VirtualService "reviews" is invalid' in result.err
    assert "spec.http[0].route[0].weight: Invalid value: \"fifty\": " \
           "spec.http[0].route[0].weight in body must be of type integer" in result.err
    assert 'spec.http[0].match[0].uri: Invalid value: {"regex":"(unclosed"}: not a valid ' \
           "regular expression" in result.err
    dr = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v1, labels: {version: v2}}
"""
    result = await run("apply", "-f", "-", stdin=dr)
    assert result.code == 1
    assert "duplicate subset name 'v1'" in result.err
    assert (await run("get", "dr", "-n", "default")).err.startswith("No resources found")


async def test_a_gateway_of_a_class_nobody_serves_is_stored_with_a_warning(run: Any) -> None:
    gw = """\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: istio
  listeners: [{name: http, port: 80, protocol: HTTP}]
"""
    result = await run("apply", "-f", "-", stdin=gw)
    assert result.code == 0, result.err
    assert "Warning: spec.gatewayClassName: no controller serves GatewayClass 'istio' in " \
           "knet" in result.err
    got = json.loads((await run("get", "gateway", "gw", "-n", "default", "-o", "json")).out)
    assert got["spec"]["listeners"][0]["allowedRoutes"] == {   # the upstream CRD's default
        "namespaces": {"from": "Same"}}
