"""North-south as data: Gateways of class knet, HTTPRoutes attached by parentRefs and
Ingresses of class knet compiled into the listener ports' routes, checked with the request
shapes of the Gateway API conformance tests httproute-hostname-intersection,
httproute-simple-same-namespace and httproute-matching (which backend, or 404/500), and the
HTTPRoute parent statuses (Accepted / NoMatchingListenerHostname, ResolvedRefs /
BackendNotFound). The attachment rules themselves (control/controllers/gateway.py) too."""

from __future__ import annotations

import random

from meshkit import Obj, service, services  # type: ignore[import-not-found]

from control.controllers.gateway import attaches, hostname_match, intersect
from control.models.meshgateway import HTTPRoute
from knet.mesh.exchange import Answer, Exchange, plan
from knet.mesh.lb import MeshBalancer
from knet.mesh.northsouth import add_north_south, listener_key
from knet.mesh.table import compile_table
from knet.mesh.types import RouteTable
from knet.mesh.world import World
from knet.proxy.balancer import SystemClock

NS = "gateway-conformance-infra"


def gateway(name: str, listeners: list[Obj], cls: str = "knet") -> Obj:
    return {"metadata": {"name": name, "namespace": NS},
            "spec": {"gatewayClassName": cls, "listeners": listeners}}


def listener(name: str, host: str | None = None, port: int = 80, frm: str = "Same") -> Obj:
    out: Obj = {"name": name, "port": port, "protocol": "HTTP",
                "allowedRoutes": {"namespaces": {"from": frm}}}
    if host:
        out["hostname"] = host
    return out


def route(name: str, gw: str, hostnames: list[str], rules: list[Obj], *,
          created: str = "2026-01-01T00:00:00Z", ns: str = NS, **ref: object) -> Obj:
    return {"metadata": {"name": name, "namespace": ns, "generation": 1,
                         "creationTimestamp": created},
            "spec": {"parentRefs": [{"name": gw, "namespace": NS, **ref}],
                     "hostnames": hostnames, "rules": rules}}


def rule(prefix: str, backend: str, **match: object) -> Obj:
    return {"matches": [{"path": {"type": "PathPrefix", "value": prefix}, **match}],
            "backendRefs": [{"name": backend, "port": 8080}]}


SVCS = services(*(service(f"infra-backend-v{i}", NS, ports=(8080,), app_protocol=None,
                          ip=f"10.96.1.{i}") for i in (1, 2, 3)))


def build(gws: list[Obj], routes: list[Obj], ingresses: list[Obj] = ()) -> RouteTable:  # type: ignore[assignment]
    models = [HTTPRoute.model_validate(r) for r in routes]
    world = World(SVCS)
    return add_north_south(compile_table(SVCS), world, httproutes=models,
                           gateways={f"{NS}/{g['metadata']['name']}": g for g in gws},
                           ingresses=ingresses, namespace_labels={})


def ask(table: RouteTable, host: str, path: str, port: int = 80, **headers: str) -> str:
    """The backend Service name that serves the request, or the status the proxy answers."""
    hdrs = "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
    data = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{hdrs}\r\n".encode()
    got = plan(table, listener_key(port), method="GET", target=path, data=data,
               client_ip="172.18.0.1", client_ns=None,
               lb=MeshBalancer(clock=SystemClock(), rng=random.random), rng=random.random)
    if isinstance(got, Answer):
        return str(got.status)
    assert isinstance(got, Exchange)
    return got.backend.service.split("/")[1]


INTERSECTION = [
    gateway("httproute-hostname-intersection", [
        listener("listener-1", "very.specific.com"), listener("listener-2", "*.wildcard.io"),
        listener("listener-3", "*.anotherwildcard.io")])]
ROUTES = [
    route("specific-host-matches-listener-specific-host", "httproute-hostname-intersection",
          ["non.matching.com", "*.nonmatchingwildcard.io", "very.specific.com"],
          [rule("/s1", "infra-backend-v1")]),
    route("specific-host-matches-listener-wildcard-host", "httproute-hostname-intersection",
          ["non.matching.com", "wildcard.io", "foo.wildcard.io", "bar.wildcard.io",
           "foo.bar.wildcard.io"], [rule("/s2", "infra-backend-v2")]),
    route("wildcard-host-matches-listener-specific-host", "httproute-hostname-intersection",
          ["non.matching.com", "*.specific.com"], [rule("/s3", "infra-backend-v3")]),
    route("wildcard-host-matches-listener-wildcard-host", "httproute-hostname-intersection",
          ["*.anotherwildcard.io"], [rule("/s4", "infra-backend-v1")]),
    route("no-intersecting-hosts", "httproute-hostname-intersection",
          ["specific.but.wrong.com", "wildcard.io"], [rule("/s5", "infra-backend-v2")])]


def test_httproute_hostname_intersection() -> None:
    t = build(INTERSECTION, ROUTES)
    expect = {("very.specific.com", "/s1"): "infra-backend-v1",
              ("very.specific.com:1234", "/s1"): "infra-backend-v1",
              ("non.matching.com", "/s1"): "404", ("foo.nonmatchingwildcard.io", "/s1"): "404",
              ("foo.wildcard.io", "/s1"): "404", ("very.specific.com", "/non-matching-prefix"):
              "404", ("foo.wildcard.io", "/s2"): "infra-backend-v2",
              ("bar.wildcard.io", "/s2"): "infra-backend-v2",
              ("foo.bar.wildcard.io", "/s2"): "infra-backend-v2",
              ("non.matching.com", "/s2"): "404", ("wildcard.io", "/s2"): "404",
              ("very.specific.com", "/s2"): "404", ("very.specific.com", "/s3"):
              "infra-backend-v3", ("foo.specific.com", "/s3"): "404",
              ("foo.wildcard.io", "/s3"): "404", ("foo.anotherwildcard.io", "/s4"):
              "infra-backend-v1", ("foo.bar.anotherwildcard.io", "/s4"): "infra-backend-v1",
              ("anotherwildcard.io", "/s4"): "404", ("very.specific.com", "/s4"): "404",
              ("specific.but.wrong.com", "/s5"): "404", ("wildcard.io", "/s5"): "404"}
    got = {k: ask(t, *k) for k in expect}
    assert got == expect
    parents = t.status[f"HTTPRoute {NS}/no-intersecting-hosts"]
    accepted = parents[0]["conditions"][0]  # type: ignore[index]
    assert (accepted["status"], accepted["reason"]) == ("False", "NoMatchingListenerHostname")
    assert parents[0]["controllerName"] == "knet.dev/gateway-controller"
    ok = t.status[f"HTTPRoute {NS}/specific-host-matches-listener-wildcard-host"][0]
    assert [c["status"] for c in ok["conditions"]] == ["True", "True"]  # type: ignore[index]


def test_simple_same_namespace_and_a_missing_backend() -> None:
    gws = [gateway("same-namespace", [listener("http")])]
    t = build(gws, [route("gateway-conformance-infra-test", "same-namespace", [],
                          [{"backendRefs": [{"name": "infra-backend-v1", "port": 8080}]}]),
                    route("broken", "same-namespace", ["broken.example"],
                          [rule("/", "no-such-service")])])
    assert ask(t, "anything.example", "/") == "infra-backend-v1"
    assert ask(t, "broken.example", "/x") == "500"
    st = t.status[f"HTTPRoute {NS}/broken"][0]["conditions"]
    assert [(c["type"], c["status"], c["reason"]) for c in st] == [  # type: ignore[index,union-attr]
        ("Accepted", "True", "Accepted"), ("ResolvedRefs", "False", "BackendNotFound")]


def test_httproute_matching_precedence() -> None:
    gws = [gateway("same-namespace", [listener("http")])]
    rules = [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}},
                          {"path": {"type": "PathPrefix", "value": "/"},
                           "headers": [{"name": "version", "value": "one"}]}],
              "backendRefs": [{"name": "infra-backend-v1", "port": 8080}]},
             {"matches": [{"path": {"type": "PathPrefix", "value": "/v2"}},
                          {"path": {"type": "PathPrefix", "value": "/"},
                           "headers": [{"name": "version", "value": "two"}]}],
              "backendRefs": [{"name": "infra-backend-v2", "port": 8080}]}]
    t = build(gws, [route("matching", "same-namespace", [], rules)])
    assert ask(t, "x", "/") == "infra-backend-v1"
    assert ask(t, "x", "/example") == "infra-backend-v1"
    assert ask(t, "x", "/", version="one") == "infra-backend-v1"
    assert ask(t, "x", "/v2") == "infra-backend-v2"
    assert ask(t, "x", "/v2/example") == "infra-backend-v2"
    assert ask(t, "x", "/", version="two") == "infra-backend-v2"
    assert ask(t, "x", "/v2example") == "infra-backend-v1"


def test_a_gateway_of_another_class_and_wrong_section_are_not_served() -> None:
    gws = [gateway("other", [listener("http")], cls="istio"),
           gateway("mine", [listener("http", port=8080)])]
    t = build(gws, [route("r1", "other", [], [rule("/", "infra-backend-v1")]),
                    route("r2", "mine", [], [rule("/", "infra-backend-v2")],
                          sectionName="nope")])
    assert listener_key(80) not in t.ports and listener_key(8080) not in t.ports
    st = t.status[f"HTTPRoute {NS}/r2"][0]["conditions"][0]  # type: ignore[index]
    assert (st["status"], st["reason"]) == ("False", "NoMatchingParent")
    assert f"HTTPRoute {NS}/r1" not in t.status or not t.status[f"HTTPRoute {NS}/r1"]


def test_ingress_of_class_knet() -> None:
    ing = {"metadata": {"name": "web", "namespace": NS},
           "spec": {"ingressClassName": "knet", "rules": [
               {"host": "shop.example", "http": {"paths": [
                   {"path": "/api", "pathType": "Prefix", "backend": {"service": {
                       "name": "infra-backend-v2", "port": {"number": 8080}}}},
                   {"path": "/", "pathType": "Prefix", "backend": {"service": {
                       "name": "infra-backend-v1", "port": {"number": 8080}}}}]}}],
               "defaultBackend": {"service": {"name": "infra-backend-v3",
                                              "port": {"number": 8080}}}}}
    other = {"metadata": {"name": "x", "namespace": NS},
             "spec": {"ingressClassName": "nginx", "defaultBackend": {"service": {
                 "name": "infra-backend-v1", "port": {"number": 8080}}}}}
    t = build([], [], [ing, other])
    assert ask(t, "shop.example", "/api/items") == "infra-backend-v2"
    assert ask(t, "shop.example:80", "/") == "infra-backend-v1"
    assert ask(t, "elsewhere.example", "/api") == "infra-backend-v3"


def test_attachment_rules() -> None:
    assert hostname_match("*.example.com", "a.b.example.com")
    assert not hostname_match("*.example.com", "example.com")
    assert intersect(None, []) == [] and intersect("a.com", []) == ["a.com"]
    assert intersect("*.example.com", ["*.foo.example.com", "bar.com"]) == ["*.foo.example.com"]
    assert intersect("very.specific.com", ["*.specific.com"]) == ["very.specific.com"]
    assert intersect("*.wildcard.io", ["wildcard.io"]) is None
    gw = gateway("g", [listener("a", frm="Same"), listener("b", port=81, frm="All")])
    r = route("r", "g", [], [], ns="elsewhere")
    got, reason, _ = attaches(r, gw, namespace_labels={})
    assert got == {"b": []} and reason == "Accepted"
    r = route("r", "g", [], [], ns="elsewhere", sectionName="a")
    got, reason, _ = attaches(r, gw, namespace_labels={})
    assert got == {} and reason == "NotAllowedByListeners"
