"""VirtualServices and DestinationRules compiled into the route table: Istio's first-match
order, header routing to subsets (pods picked by labels), weights, retries, faults,
rewrite, mirror, DestinationRule policies, ambient enrollment and API conflicts."""

from __future__ import annotations

from meshkit import (
    backend_of,
    destinationrule,
    httproute,
    route_for,
    service,
    services,
    virtualservice,
)

from knet.mesh.table import compile_table
from knet.mesh.types import RouteTable

NS = "bookinfo"
REVIEWS = f"{NS}/reviews:p9080"
SVCS = services(service("reviews", ns=NS, ports=(9080,), pods=3),
                service("ratings", ns=NS, ports=(9080,), ip="10.96.0.21"))
PODS = {f"{NS}/reviews-0": {"app": "reviews", "version": "v1"},
        f"{NS}/reviews-1": {"app": "reviews", "version": "v2"},
        f"{NS}/reviews-2": {"app": "reviews", "version": "v3"}}
SUBSETS = destinationrule("reviews", "reviews", {"subsets": [
    {"name": f"v{i}", "labels": {"version": f"v{i}"}} for i in (1, 2, 3)]}, ns=NS)


def _table(*http: dict[str, object], dr: dict[str, object] = SUBSETS,
           hosts: tuple[str, ...] = ("reviews",)) -> RouteTable:
    return compile_table(SVCS, virtualservices=[virtualservice("reviews", list(hosts),
                                                               list(http), ns=NS)],
                         destinationrules=[dr], pod_labels=PODS)


def _dest(subset: str, weight: int | None = None) -> dict[str, object]:
    d: dict[str, object] = {"destination": {"host": "reviews", "subset": subset}}
    if weight is not None:
        d["weight"] = weight
    return d


def test_header_routing_to_a_subset_first_match_wins() -> None:
    table = compile_table(SVCS, virtualservices=[virtualservice("reviews", ["reviews"], [
        {"match": [{"headers": {"end-user": {"exact": "jason"}}}], "route": [_dest("v2")]},
        {"route": [_dest("v1")]}], ns=NS)], destinationrules=[SUBSETS], pod_labels=PODS)
    jason = route_for(table, REVIEWS, headers={"End-User": "jason"})
    other = route_for(table, REVIEWS, headers={"End-User": "bob"})
    assert jason is not None and other is not None
    assert [e.pod for e in jason.backends[0].endpoints] == [f"{NS}/reviews-1"]
    assert [e.pod for e in other.backends[0].endpoints] == [f"{NS}/reviews-0"]
    assert jason.source == f"virtualservice {NS}/reviews http[0] match[0]"
    assert jason.backends[0].name == f"{NS}/reviews:9080/v2"


def test_weights_hosts_fqdn_and_istio_defaults() -> None:
    table = _table({"route": [_dest("v1", 80), _dest("v2", 20)]},
                   hosts=("reviews.bookinfo.svc.cluster.local",))
    r = route_for(table, REVIEWS)
    assert r is not None and [b.weight for b in r.backends] == [80, 20]
    assert r.retry.attempts == 2 and "503" in r.retry.retry_on and r.timeout is None


def test_uri_matches_regex_method_query_and_rewrite() -> None:
    table = _table(
        {"match": [{"uri": {"regex": "/api/v[0-9]+/.*"}, "method": {"exact": "POST"}}],
         "route": [_dest("v3")]},
        {"match": [{"uri": {"prefix": "/old"}}], "rewrite": {"uri": "/new"},
         "route": [_dest("v2")]},
        {"match": [{"queryParams": {"debug": {"exact": "1"}}}], "route": [_dest("v2")]},
        {"match": [{"uri": {"exact": "/"}}], "route": [_dest("v1")]})
    t = table
    v = {s: f"{NS}/reviews:9080/{s}" for s in ("v1", "v2", "v3")}
    assert backend_of(t, REVIEWS, "/api/v2/x", method="POST") == v["v3"]
    assert backend_of(t, REVIEWS, "/api/v2/x") == "404"
    assert backend_of(t, REVIEWS, "/oldies") == v["v2"]  # istio prefix is a string prefix
    assert backend_of(t, REVIEWS, "/x?debug=1") == v["v2"]
    assert backend_of(t, REVIEWS, "/") == v["v1"]
    r = route_for(t, REVIEWS, "/old/a")
    assert r is not None and r.rewrite is not None and r.rewrite.apply("/old/a") == "/new/a"


def test_timeout_retries_fault_mirror_headers() -> None:
    table = _table({
        "route": [{"destination": {"host": "reviews", "subset": "v1"},
                   "headers": {"response": {"set": {"x-v": "1"}}}}],
        "timeout": "1.5s", "retries": {"attempts": 3, "perTryTimeout": "500ms",
                                       "retryOn": "5xx,connect-failure"},
        "fault": {"abort": {"httpStatus": 503, "percentage": {"value": 50}},
                  "delay": {"fixedDelay": "2s"}},
        "mirror": {"host": "ratings"}, "mirrorPercentage": {"value": 10},
        "headers": {"request": {"add": {"x-from": "mesh"}, "remove": ["x-secret"]}}})
    r = route_for(table, REVIEWS)
    assert r is not None and r.fault is not None and r.mirror is not None
    assert (r.timeout, r.retry.attempts, r.retry.per_try_timeout) == (1.5, 3, 0.5)
    assert r.retry.retries(500) and r.retry.retries(None) and not r.retry.retries(404)
    assert (r.fault.abort_status, r.fault.abort_percent) == (503, 50.0)
    assert (r.fault.delay, r.fault.delay_percent) == (2.0, 100.0)
    assert r.mirror.backend.service == f"{NS}/ratings" and r.mirror.percent == 10.0
    assert r.request_headers.add == (("x-from", "mesh"),)
    assert r.backends[0].response_headers.set == (("x-v", "1"),)


def test_destinationrule_policies_subset_over_host() -> None:
    dr = destinationrule("reviews", "reviews", {
        "trafficPolicy": {"loadBalancer": {"simple": "LEAST_REQUEST"},
                          "connectionPool": {"tcp": {"maxConnections": 10},
                                             "http": {"http1MaxPendingRequests": 1}},
                          "outlierDetection": {"consecutive5xxErrors": 1, "interval": "1s",
                                               "baseEjectionTime": "3m",
                                               "maxEjectionPercent": 100}},
        "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                    {"name": "v2", "labels": {"version": "v2"}, "trafficPolicy": {
                        "loadBalancer": {"consistentHash": {"httpHeaderName": "X-User"}}}}]},
        ns=NS)
    table = _table({"route": [_dest("v1", 50), _dest("v2", 50)]}, dr=dr)
    r = route_for(table, REVIEWS)
    assert r is not None
    v1, v2 = r.backends
    assert v1.lb.policy == "LEAST_REQUEST" and v2.lb.policy == "CONSISTENT_HASH"
    assert v2.lb.hash_header == "x-user"
    assert v1.pool is not None and (v1.pool.max_connections, v1.pool.max_pending) == (10, 1)
    assert v1.outlier is not None and v1.outlier.base_ejection == 180.0
    assert v1.outlier.consecutive_5xx == 1 and v1.outlier.max_ejection_percent == 100


def test_undefined_subset_and_unknown_host_answer_503() -> None:
    table = _table({"route": [_dest("v9", 50),
                              {"destination": {"host": "ghost"}, "weight": 50}]})
    r = route_for(table, REVIEWS)
    assert r is not None and [b.status for b in r.backends] == [503, 503]
    cond = table.status[f"VirtualService {NS}/reviews"][1]
    assert cond["status"] == "False" and "v9" in str(cond["message"])


def test_httproute_wins_over_virtualservice_and_says_so() -> None:
    table = compile_table(SVCS, httproutes=[httproute(
        "r", [{"backendRefs": [{"name": "ratings", "port": 9080}]}], parent="reviews", ns=NS)],
        virtualservices=[virtualservice("reviews", ["reviews"], [{"route": [_dest("v1")]}],
                                        ns=NS)], destinationrules=[SUBSETS], pod_labels=PODS)
    assert backend_of(table, REVIEWS) == f"{NS}/ratings:9080"
    acc = table.status[f"VirtualService {NS}/reviews"][0]
    assert (acc["status"], acc["reason"]) == ("False", "Conflicted")


def test_two_virtualservices_for_one_host_the_oldest_wins() -> None:
    table = compile_table(SVCS, virtualservices=[
        virtualservice("young", ["reviews"], [{"route": [_dest("v3")]}], ns=NS,
                       created="2026-03-01T00:00:00Z"),
        virtualservice("old", ["reviews"], [{"route": [_dest("v1")]}], ns=NS)],
        destinationrules=[SUBSETS], pod_labels=PODS)
    assert backend_of(table, REVIEWS) == f"{NS}/reviews:9080/v1"
    assert table.status[f"VirtualService {NS}/young"][0]["reason"] == "Conflicted"


def test_ambient_enrollment() -> None:
    svcs = services(service("plain", ns="amb", ports=(80, 5432), app_protocol=None),
                    service("plain", ns="off", ports=(80,), app_protocol=None,
                            ip="10.96.0.30"))
    # service() names ports p<N>; an ambient namespace meshes http-named ports, or routed ones
    table = compile_table(svcs, namespace_labels={"amb": {"istio.io/dataplane-mode": "ambient"}})
    assert sorted(table.ports) == []
    table = compile_table(svcs, namespace_labels={"amb": {"istio.io/dataplane-mode": "ambient"},
                                                  "off": {}},
                          httproutes=[httproute("r", [{"backendRefs": [
                              {"name": "plain", "port": 80}]}], parent="plain", ns="amb",
                              port=80),
                              httproute("r", [{"backendRefs": [{"name": "plain", "port": 80}]}],
                                        parent="plain", ns="off")])
    assert sorted(table.ports) == ["amb/plain:p80"]
