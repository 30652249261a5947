"""PeerAuthentication and AuthorizationPolicy: admission (422 causes), and the pure
decisions of knet/mesh/authz.py in the shapes of Istio's docs (mode precedence, DENY before
ALLOW, allow-nothing, L7 attributes at L4 made stricter)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from meshcrds import admit, info, table  # type: ignore[import-not-found]

from control.errors import Invalid
from control.models.meshsecurity import AuthorizationPolicy, PeerAuthentication
from knet.mesh.authz import (
    Peer,
    Target,
    authorize,
    mtls_mode,
    policies_for_service,
    policies_for_workload,
)

SLEEP = "cluster.local/ns/foo/sa/sleep"


def _pa(ns: str, mode: str | None, *, name: str = "default", selector: dict[str, str] | None
        = None, ports: dict[str, str] | None = None, created: str = "2026-01-01T00:00:00Z"
        ) -> PeerAuthentication:
    spec: dict[str, Any] = {}
    if mode:
        spec["mtls"] = {"mode": mode}
    if selector is not None:
        spec["selector"] = {"matchLabels": selector}
    if ports:
        spec["portLevelMtls"] = {p: {"mode": m} for p, m in ports.items()}
    return PeerAuthentication.model_validate({
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": created},
        "spec": spec})


def _ap(spec: dict[str, Any], *, name: str = "p", ns: str = "foo") -> AuthorizationPolicy:
    return AuthorizationPolicy.model_validate({
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": spec})


def _causes(resource: str, spec: dict[str, Any]) -> dict[str, str]:
    kind = info(resource).kind
    with pytest.raises(Invalid) as exc:
        admit(resource, {"apiVersion": "security.istio.io/v1", "kind": kind,
                         "metadata": {"name": "x", "namespace": "foo"}, "spec": spec})
    assert exc.value.code == 422
    return {c.field: c.message for c in exc.value.causes}


# -- admission -------------------------------------------------------------------------------

def test_served_as_istio_serves_them() -> None:
    assert info("peerauthentications").short_names == ("pa",)
    assert info("authorizationpolicies").api_version == "security.istio.io/v1"


def test_peerauthentication_causes() -> None:
    assert _causes("peerauthentications", {"mtls": {"mode": "STRICTER"}})["spec.mtls.mode"] \
        .startswith('Unsupported value: "STRICTER": supported values: "UNSET", "DISABLE"')
    causes = _causes("peerauthentications", {"portLevelMtls": {"8080": {"mode": "DISABLE"}}})
    assert "portLevelMtls requires a workload selector" in causes["spec"]
    causes = _causes("peerauthentications", {"selector": {"matchLabels": {"a": "b"}},
                                             "portLevelMtls": {"http": {"mode": "DISABLE"}}})
    assert "port must be in the range 1..65535" in causes["spec.portLevelMtls"]


def test_authorizationpolicy_causes() -> None:
    causes = _causes("authorizationpolicies", {
        "action": "ALLOW", "rules": [{"from": [{"source": {"ipBlocks": ["10.0.0.300/8"]}}],
                                      "to": [{"operation": {"ports": ["http"]}}]}]})
    assert "invalid IP address or CIDR '10.0.0.300/8'" in \
        causes["spec.rules[0].from[0].source.ipBlocks"]
    assert "invalid port 'http'" in causes["spec.rules[0].to[0].operation.ports"]
    causes = _causes("authorizationpolicies", {
        "selector": {"matchLabels": {"app": "x"}},
        "targetRefs": [{"kind": "Service", "group": "", "name": "x"}]})
    assert "only one of targetRefs or workload selector" in causes["spec"]
    assert "a provider must be set" in _causes("authorizationpolicies",
                                               {"action": "CUSTOM"})["spec"]
    assert _causes("authorizationpolicies", {"action": "deny"})["spec.action"].startswith(
        'Unsupported value: "deny"')


def test_allow_nothing_is_valid_and_kubectl_shows_action() -> None:
    obj, warnings = admit("authorizationpolicies", {
        "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": "allow-nothing", "namespace": "foo"}, "spec": {}})
    assert warnings == []
    t = table("authorizationpolicies", [obj], now=datetime.now(UTC))
    assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "Action", "Age"]


# -- PeerAuthentication precedence -----------------------------------------------------------

def test_default_is_permissive_and_narrowest_wins() -> None:
    web = {"app": "web"}
    assert mtls_mode([], namespace="foo", labels=web) == "PERMISSIVE"
    mesh = _pa("istio-system", "STRICT")
    assert mtls_mode([mesh], namespace="foo", labels=web) == "STRICT"
    ns = _pa("foo", "PERMISSIVE")
    assert mtls_mode([mesh, ns], namespace="foo", labels=web) == "PERMISSIVE"
    assert mtls_mode([mesh, ns], namespace="bar", labels=web) == "STRICT"
    wl = _pa("foo", "DISABLE", name="web", selector=web)
    assert mtls_mode([mesh, ns, wl], namespace="foo", labels=web) == "DISABLE"
    assert mtls_mode([mesh, ns, wl], namespace="foo", labels={"app": "db"}) == "PERMISSIVE"
    unset = _pa("foo", "UNSET", name="web", selector=web, ports={"8080": "DISABLE"})
    assert mtls_mode([mesh, unset], namespace="foo", labels=web, port=80) == "STRICT"
    assert mtls_mode([mesh, unset], namespace="foo", labels=web, port=8080) == "DISABLE"


def test_oldest_namespace_policy_wins() -> None:
    old = _pa("foo", "STRICT", name="a", created="2026-01-01T00:00:00Z")
    new = _pa("foo", "DISABLE", name="b", created="2026-02-01T00:00:00Z")
    assert mtls_mode([new, old], namespace="foo", labels={}) == "STRICT"


# -- AuthorizationPolicy ---------------------------------------------------------------------

VIEWER = _ap({"targetRefs": [{"kind": "Service", "group": "", "name": "httpbin"}],
              "action": "ALLOW", "rules": [{
                  "from": [{"source": {"principals": [SLEEP]}}],
                  "to": [{"operation": {"methods": ["GET"], "paths": ["/ip", "/headers*"]}}]}]},
             name="viewer")


def test_allow_matches_principal_method_and_path() -> None:
    me, other = Peer("10.244.1.5", SLEEP), Peer("10.244.2.5", "cluster.local/ns/bar/sa/sleep")
    d = authorize([VIEWER], me, Target(8000, "GET", "/headers/x?y=1"), l7=True)
    assert (d.allowed, d.policy, d.why) == (True, "foo/viewer", "allowed by")
    assert not authorize([VIEWER], me, Target(8000, "POST", "/ip"), l7=True).allowed
    assert not authorize([VIEWER], me, Target(8000, "GET", "/status"), l7=True).allowed
    d = authorize([VIEWER], other, Target(8000, "GET", "/ip"), l7=True)
    assert (d.allowed, d.why, d.verdict) == (False, "no ALLOW policy matched", "DENY")
    assert not authorize([VIEWER], Peer("10.0.0.1"), Target(8000, "GET", "/ip"),
                         l7=True).allowed   # plaintext: no principal


def test_deny_before_allow_and_no_policy_allows() -> None:
    deny = _ap({"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/ip"]}}]}]},
               name="deny-ip")
    d = authorize([VIEWER, deny], Peer("1.1.1.1", SLEEP), Target(8000, "GET", "/ip"), l7=True)
    assert (d.allowed, d.policy) == (False, "foo/deny-ip")
    assert authorize([], Peer("1.1.1.1"), Target(80), l7=False).allowed


def test_allow_nothing_and_allow_all() -> None:
    nothing, everything = _ap({}, name="nothing"), _ap({"rules": [{}]}, name="all")
    assert not authorize([nothing], Peer("1.1.1.1", SLEEP), Target(80), l7=False).allowed
    assert authorize([nothing, everything], Peer("1.1.1.1"), Target(80), l7=False).allowed


def test_sources_namespaces_ipblocks_and_negations() -> None:
    ap = _ap({"rules": [{"from": [{"source": {"namespaces": ["foo"],
                                              "notIpBlocks": ["10.244.9.0/24"]}}]}]})
    assert authorize([ap], Peer("10.244.1.5", SLEEP), Target(80), l7=False).allowed
    assert not authorize([ap], Peer("10.244.9.5", SLEEP), Target(80), l7=False).allowed
    assert not authorize([ap], Peer("10.244.1.5", "cluster.local/ns/bar/sa/x"), Target(80),
                         l7=False).allowed
    ap = _ap({"rules": [{"from": [{"source": {"notPrincipals": ["*"]}}]}]})
    assert authorize([ap], Peer("10.0.0.1"), Target(80), l7=False).allowed
    assert not authorize([ap], Peer("10.0.0.1", SLEEP), Target(80), l7=False).allowed


def test_l7_attributes_at_l4_are_stricter() -> None:
    allow = _ap({"rules": [{"to": [{"operation": {"ports": ["80"], "paths": ["/ip"]}}]}]})
    assert not authorize([allow], Peer("1.1.1.1", SLEEP), Target(80), l7=False).allowed
    deny = _ap({"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["POST"]}}]}]})
    assert not authorize([deny], Peer("1.1.1.1", SLEEP), Target(80), l7=False).allowed
    assert authorize([deny], Peer("1.1.1.1", SLEEP), Target(80, "GET", "/"), l7=True).allowed


def test_audit_marks_without_deciding() -> None:
    audit = _ap({"action": "AUDIT", "rules": [{}]}, name="audit")
    d = authorize([audit], Peer("1.1.1.1"), Target(80), l7=False)
    assert (d.allowed, d.audit, d.policy) == (True, "foo/audit", "")


def test_which_policies_apply_where() -> None:
    sel = _ap({"selector": {"matchLabels": {"app": "httpbin"}}}, name="sel")
    ns_wide = _ap({}, name="ns")
    root = _ap({}, name="mesh", ns="istio-system")
    other = _ap({}, name="other", ns="bar")
    pols = [VIEWER, sel, ns_wide, root, other]
    names = [p.metadata.name for p in policies_for_workload(
        pols, namespace="foo", labels={"app": "httpbin"})]
    assert sorted(names) == ["mesh", "ns", "sel"]
    assert [p.metadata.name for p in policies_for_workload(
        pols, namespace="foo", labels={"app": "db"})] != names
    assert [p.metadata.name for p in policies_for_service(
        pols, namespace="foo", name="httpbin")] == ["viewer"]
    assert policies_for_service(pols, namespace="bar", name="httpbin") == []


# -- enrollment and the node's plaintext admission -------------------------------------------

def _pod(ns: str, name: str, ip: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "labels": labels or {}},
            "spec": {"nodeName": "node-1", "serviceAccountName": "web"},
            "status": {"podIP": ip, "phase": "Running"}}


def test_enrollment_by_namespace_label_with_pod_opt_out() -> None:
    from knet.mesh.secsource import build_security

    ns = {"foo": {"istio.io/dataplane-mode": "ambient"}, "bar": {}}
    sec = build_security({"a": _pod("foo", "a", "10.0.0.1"),
                          "b": _pod("foo", "b", "10.0.0.2", {"istio.io/dataplane-mode": "none"}),
                          "c": _pod("bar", "c", "10.0.0.3")}, ns, [], [])
    assert {ip: w.meshed for ip, w in sec.by_ip.items()} == {
        "10.0.0.1": True, "10.0.0.2": False, "10.0.0.3": False}
    assert sec.by_ip["10.0.0.1"].spiffe == "spiffe://cluster.local/ns/foo/sa/web"


def test_node_guard_resets_plaintext_only_when_strict_or_denied() -> None:
    from knet.mesh.guard import NodeGuard
    from knet.mesh.secsource import build_security
    from knet.proxy.balancer import Endpoint
    from knet.proxy.config import ServicePort
    from knet.proxy.flows import FlowRecord

    ns = {"foo": {"istio.io/dataplane-mode": "ambient"}}
    pods = {"a": _pod("foo", "a", "10.0.0.1", {"app": "web"})}
    sp = ServicePort("foo", "web", "http", "10.96.0.9", 80, "TCP",
                     endpoints=(Endpoint("10.0.0.1", 8080, "foo/a"),))

    def admit(peerauths: list[PeerAuthentication], policies: list[AuthorizationPolicy]
              ) -> tuple[str, str]:
        sec = build_security(pods, ns, peerauths, policies)
        rec = FlowRecord(time=0, node="n", protocol="tcp", client_ip="10.0.9.9", client_port=1,
                         service="foo/web", service_port=80)
        return NodeGuard(lambda: sec).admit(sp, rec), rec.authz_policy

    assert admit([], []) == ("", "")
    why, _ = admit([_pa("foo", "STRICT")], [])
    assert "PeerAuthentication STRICT on foo/a" in why
    assert admit([_pa("foo", "STRICT"), _pa("foo", "PERMISSIVE", name="a", selector={
        "app": "web"})], []) == ("", "")
    why, policy = admit([], [_ap({"rules": [{"from": [{"source": {"namespaces": ["foo"]}}]}]},
                                 name="foo-only")])
    assert policy == "foo/foo-only" and "no ALLOW policy matched" in why
