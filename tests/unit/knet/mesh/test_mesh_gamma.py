"""HTTPRoutes with Service parents (GAMMA) compiled into the route table, checked against
the shapes and expectations of kubernetes-sigs/gateway-api conformance/tests/mesh
(mesh-basic, mesh-split, mesh-ports, httproute-weight, httproute-matching) and the
spec's precedence and invalid-backend rules. No sockets."""

from __future__ import annotations

from collections import Counter

from meshkit import NS, backend_of, httproute, port, route_for, service, services

from knet.mesh.match import pick_backend
from knet.mesh.table import compile_table

ECHO = f"{NS}/echo:p80"
SVCS = services(service("echo", ip="10.96.0.10"), service("echo-v1", ip="10.96.0.11"),
                service("echo-v2", ip="10.96.0.12"), service("echo-v3", ip="10.96.0.13"))


def test_mesh_basic_no_route_goes_to_the_service_itself() -> None:
    table = compile_table(SVCS)
    r = route_for(table, ECHO, "/anything")
    assert r is not None and r.source == "default"
    assert [b.name for b in r.backends] == [f"{NS}/echo:80"]
    assert [e.pod for e in r.backends[0].endpoints] == [f"{NS}/echo-0", f"{NS}/echo-1"]


def test_mesh_split_exact_paths() -> None:
    table = compile_table(SVCS, httproutes=[httproute("mesh-split", [
        {"matches": [{"path": {"type": "Exact", "value": "/v1"}}],
         "backendRefs": [{"name": "echo-v1", "port": 80}]},
        {"matches": [{"path": {"type": "Exact", "value": "/v2"}}],
         "backendRefs": [{"name": "echo-v2", "port": 80}]}])])
    assert backend_of(table, ECHO, "/v1") == f"{NS}/echo-v1:80"
    assert backend_of(table, ECHO, "/v2") == f"{NS}/echo-v2:80"
    assert backend_of(table, ECHO, "/v1/") == "404"  # exact means exact
    assert backend_of(table, ECHO, "/v2?x=1") == f"{NS}/echo-v2:80"
    r = route_for(table, ECHO, "/v2")
    assert r is not None and r.source == f"httproute {NS}/mesh-split rules[1] matches[0]"
    # the route attaches to every port of the parent (no port in parentRef)
    assert backend_of(table, f"{NS}/echo:p8080", "/v1") == f"{NS}/echo-v1:80"


def test_httproute_matching_conformance_cases() -> None:
    table = compile_table(SVCS, httproutes=[httproute("mesh-matching", [
        {"matches": [{"path": {"type": "PathPrefix", "value": "/"}},
                     {"headers": [{"name": "version", "value": "one"}]}],
         "backendRefs": [{"name": "echo-v1", "port": 8080}]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/v2"}},
                     {"headers": [{"name": "version", "value": "two"}]}],
         "backendRefs": [{"name": "echo-v2", "port": 8080}]}], port=80)])
    v1, v2 = f"{NS}/echo-v1:8080", f"{NS}/echo-v2:8080"
    cases = [("/", {}, v1), ("/example", {}, v1), ("/", {"Version": "one"}, v1),
             ("/v2", {}, v2), ("/v2/example", {}, v2), ("/", {"Version": "two"}, v2),
             ("/v2/", {}, v2), ("/v2example", {}, v1), ("/foo/v2/example", {}, v1)]
    for path, headers, want in cases:
        assert backend_of(table, ECHO, path, headers=headers) == want, (path, headers)
    # parentRef port 80: the 8080 port of echo keeps its default route
    r = route_for(table, f"{NS}/echo:p8080", "/v2")
    assert r is not None and r.source == "default"


def test_mesh_ports_parent_port_limits_the_route() -> None:
    setter = [{"type": "ResponseHeaderModifier",
               "responseHeaderModifier": {"set": [{"name": "X-Header-Set", "value": "v"}]}}]
    table = compile_table(SVCS, httproutes=[
        httproute("mesh-split-v1", [{"filters": setter, "backendRefs": [
            {"name": "echo-v1", "port": 80}]}], parent="echo-v1", port=80),
        httproute("mesh-split-v2", [{"filters": setter, "backendRefs": [
            {"name": "echo-v2", "port": 80}]}], parent="echo-v2")])
    on = route_for(table, f"{NS}/echo-v1:p80")
    off = route_for(table, f"{NS}/echo-v1:p8080")
    assert on is not None and on.response_headers.set == (("X-Header-Set", "v"),)
    assert off is not None and not off.response_headers
    for key in (f"{NS}/echo-v2:p80", f"{NS}/echo-v2:p8080"):
        r = route_for(table, key)
        assert r is not None and r.response_headers.set == (("X-Header-Set", "v"),)


def test_httproute_weight_split_70_30_0() -> None:
    table = compile_table(SVCS, httproutes=[httproute("weighted", [{"backendRefs": [
        {"name": "echo-v1", "port": 80, "weight": 70},
        {"name": "echo-v2", "port": 80, "weight": 30},
        {"name": "echo-v3", "port": 80, "weight": 0}]}])])
    r = route_for(table, ECHO)
    assert r is not None
    seen: Counter[str] = Counter()
    for i in range(1000):
        picked = pick_backend(r, i / 1000)
        assert picked is not None
        seen[picked[0].service] += 1
    assert seen == {f"{NS}/echo-v1": 700, f"{NS}/echo-v2": 300}
    assert pick_backend(r, 0.75) == (r.backends[1], 1)  # the bucket goes to the flow record


def test_precedence_across_routes() -> None:
    def rule(match: dict[str, object], to: str) -> dict[str, object]:
        return {"matches": [match], "backendRefs": [{"name": to, "port": 80}]}
    table = compile_table(SVCS, httproutes=[
        httproute("young", [rule({"path": {"type": "PathPrefix", "value": "/a"}}, "echo-v3"),
                            rule({"path": {"type": "Exact", "value": "/a/b"}}, "echo-v1")],
                  created="2026-02-01T00:00:00Z"),
        httproute("old", [rule({"path": {"type": "PathPrefix", "value": "/a/b"}}, "echo-v2"),
                          rule({"path": {"type": "PathPrefix", "value": "/a"},
                                "method": "POST"}, "echo-v1"),
                          rule({"path": {"type": "PathPrefix", "value": "/c"},
                                "headers": [{"name": "x", "value": "1"}]}, "echo-v2"),
                          rule({"path": {"type": "PathPrefix", "value": "/c"}}, "echo-v3"),
                          rule({"path": {"type": "PathPrefix", "value": "/a"}}, "echo-v2")],
                  created="2026-01-01T00:00:00Z")])
    assert backend_of(table, ECHO, "/a/b") == f"{NS}/echo-v1:80"         # exact first
    assert backend_of(table, ECHO, "/a/b/c") == f"{NS}/echo-v2:80"       # longest prefix
    assert backend_of(table, ECHO, "/a/x", method="POST") == f"{NS}/echo-v1:80"  # method
    assert backend_of(table, ECHO, "/c", headers={"X": "1"}) == f"{NS}/echo-v2:80"
    assert backend_of(table, ECHO, "/c") == f"{NS}/echo-v3:80"
    assert backend_of(table, ECHO, "/a/x") == f"{NS}/echo-v2:80"         # the older route


def test_missing_backend_answers_500_for_its_share_and_reports_it() -> None:
    table = compile_table(SVCS, httproutes=[httproute("broken", [{"backendRefs": [
        {"name": "echo-v1", "port": 80, "weight": 1},
        {"name": "nope", "port": 80, "weight": 1}]}])])
    r = route_for(table, ECHO)
    assert r is not None and r.status == 0
    assert [(b.service, b.status) for b in r.backends] == [(f"{NS}/echo-v1", 0),
                                                            (f"{NS}/nope", 500)]
    parent = table.status[f"HTTPRoute {NS}/broken"][0]
    conds = {c["type"]: c for c in parent["conditions"]}  # type: ignore[attr-defined]
    assert conds["Accepted"]["status"] == "True"
    assert (conds["ResolvedRefs"]["status"], conds["ResolvedRefs"]["reason"]) == (
        "False", "BackendNotFound")
    assert "nope" in conds["ResolvedRefs"]["message"]


def test_all_weights_zero_and_no_backends_answer_500() -> None:
    table = compile_table(SVCS, httproutes=[httproute("zero", [
        {"matches": [{"path": {"type": "PathPrefix", "value": "/z"}}],
         "backendRefs": [{"name": "echo-v1", "port": 80, "weight": 0}]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/n"}}]}])])
    for path in ("/z", "/n"):
        r = route_for(table, ECHO, path)
        assert r is not None and r.status == 500, path
        assert pick_backend(r, 0.5) is None


def test_parent_not_found_and_cross_namespace_refs() -> None:
    table = compile_table(SVCS, httproutes=[
        httproute("orphan", [{}], parent="ghost"),
        httproute("far", [{"backendRefs": [{"name": "echo-v1", "namespace": "other",
                                            "port": 80}]}])])
    acc = table.status[f"HTTPRoute {NS}/orphan"][0]["conditions"][0]  # type: ignore[index]
    assert (acc["status"], acc["reason"]) == ("False", "NoMatchingParent")
    far = table.status[f"HTTPRoute {NS}/far"][0]["conditions"][1]  # type: ignore[index]
    assert (far["status"], far["reason"]) == ("False", "RefNotPermitted")
    r = route_for(table, ECHO)
    assert r is not None and r.backends[0].status == 500


def test_reference_grant_allows_a_cross_namespace_backend() -> None:
    svcs = services(service("echo"), service("remote", ns="other", ip="10.96.0.20"))
    route = httproute("far", [{"backendRefs": [{"name": "remote", "namespace": "other",
                                                "port": 80}]}])
    grant = {"metadata": {"name": "g", "namespace": "other"},
             "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                                "namespace": NS}],
                      "to": [{"group": "", "kind": "Service"}]}}
    table = compile_table(svcs, httproutes=[route], referencegrants=[grant])
    assert backend_of(table, ECHO) == "other/remote:80"


def test_consumer_route_applies_to_its_namespace_only() -> None:
    table = compile_table(SVCS, httproutes=[httproute(
        "consumer", [{"backendRefs": [{"name": "echo-v2", "namespace": NS, "port": 80}]}],
        ns="client", parent_ns=NS)], referencegrants=[
        {"metadata": {"name": "g", "namespace": NS},
         "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                            "namespace": "client"}], "to": [{"group": "", "kind": "Service"}]}}])
    assert backend_of(table, ECHO, client_ns="client") == f"{NS}/echo-v2:80"
    assert backend_of(table, ECHO, client_ns="elsewhere") == f"{NS}/echo:80"
    assert port(table, ECHO).api == "gateway"


def test_rewrite_timeouts_and_header_filters() -> None:
    table = compile_table(SVCS, httproutes=[httproute("rw", [{
        "matches": [{"path": {"type": "PathPrefix", "value": "/old"}}],
        "filters": [{"type": "URLRewrite", "urlRewrite": {"path": {
            "type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}}},
            {"type": "RequestHeaderModifier", "requestHeaderModifier": {
                "add": [{"name": "x-a", "value": "1"}], "remove": ["x-b"]}}],
        "timeouts": {"request": "2s", "backendRequest": "500ms"},
        "backendRefs": [{"name": "echo-v1", "port": 80}]}])])
    r = route_for(table, ECHO, "/old/x?q=1")
    assert r is not None and r.rewrite is not None
    assert r.rewrite.apply("/old/x?q=1") == "/new/x?q=1"
    assert r.rewrite.apply("/old") == "/new"
    assert (r.timeout, r.retry.per_try_timeout) == (2.0, 0.5)
    assert r.request_headers.add == (("x-a", "1"),) and r.request_headers.remove == ("x-b",)
