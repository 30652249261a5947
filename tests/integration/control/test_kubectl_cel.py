"""The real kubectl against `knet control`: an HTTPRoute that breaks a CEL rule of the official
Gateway API CRD (x-kubernetes-validations) is refused by `kubectl apply` with kube-apiserver's
error line and exit code 1; fixed, it applies."""

from __future__ import annotations

from test_kubectl import Kubectl, kubectl, server  # noqa: F401 - fixtures

ROUTE = """apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: redirect}
spec:
  parentRefs: [{name: gw}]
  rules:
  - filters:
    - type: RequestRedirect
      requestRedirect: {scheme: https, statusCode: 301}
    backendRefs: [{name: web, port: 80}]
"""


def test_apply_of_a_route_breaking_a_cel_rule(kubectl: Kubectl) -> None:  # noqa: F811
    refused = kubectl.run("apply", "-f", "-", input=ROUTE, check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        'The HTTPRoute "redirect" is invalid: spec.rules[0]: Invalid value: "object": '
        "RequestRedirect filter must not be used together with backendRefs")
    fixed = ROUTE.replace("    backendRefs: [{name: web, port: 80}]\n", "")
    assert "httproute.gateway.networking.k8s.io/redirect created" in kubectl(
        "apply", "-f", "-", input=fixed)
