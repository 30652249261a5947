"""`python -m bench mesh`: the mesh route table's cost: a full rebuild with 1,000 HTTPRoutes
(or 1,000 VirtualServices) over 200 meshed Services, beside its anchor in the same run —
the proxy's own ServiceTable build over the same Services and EndpointSlices (what every
change pays anyway), with the routes as wire dicts or already parsed (as a watch source
keeps them) — and the per-request lookup (`find_route` + `pick_backend`) on the
busiest port (a miss: every route tried), beside a plain dict lookup; the north-south pass
over the same routes; what a flow record costs with the Prometheus metrics sink beside the
ring alone; then the meshed HTTP hop with mTLS on and off under wrk (bench/meshwire.py:
req/s, p50, p99 and their ratios). Measurements only, nothing asserted.
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable
from typing import Any

from bench.common import table
from control.models.meshgateway import HTTPRoute
from knet.mesh.match import find_route, pick_backend
from knet.mesh.metrics import MeshMetrics
from knet.mesh.northsouth import add_north_south
from knet.mesh.table import compile_table
from knet.mesh.world import World
from knet.proxy.config import build_table
from knet.proxy.flows import FlowRecord, FlowRing

NAME = "mesh"
DESCRIPTION = "ms per route-table rebuild (1,000 routes) and µs per request lookup"
NS = "bench"
Obj = dict[str, Any]


def _world(n_services: int) -> tuple[dict[str, Obj], dict[str, list[Obj]]]:
    svcs, slices = {}, {}
    for i in range(n_services):
        name = f"svc-{i}"
        svcs[f"{NS}/{name}"] = {"metadata": {"name": name, "namespace": NS}, "spec": {
            "clusterIP": f"10.96.{i // 250}.{i % 250 + 1}",
            "ports": [{"name": "http", "port": 80, "appProtocol": "http"}]}}
        slices[f"{NS}/{name}"] = [{
            "metadata": {"name": f"{name}-x", "namespace": NS}, "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [f"10.244.{i % 250}.{j + 1}"],
                           "targetRef": {"kind": "Pod", "namespace": NS, "name": f"{name}-{j}"}}
                          for j in range(3)]}]
    return svcs, slices


def _httproute(i: int, n_services: int) -> Obj:
    return {"metadata": {"name": f"r-{i}", "namespace": NS,
                         "creationTimestamp": f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z"},
            "spec": {"parentRefs": [{"group": "", "kind": "Service",
                                     "name": f"svc-{i % n_services}"}],
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": f"/p{i}"},
                                             "headers": [{"name": "x-v", "value": "2"}]}],
                                "backendRefs": [
                                    {"name": f"svc-{(i + 1) % n_services}", "port": 80,
                                     "weight": 80},
                                    {"name": f"svc-{(i + 2) % n_services}", "port": 80,
                                     "weight": 20}]}]}}


def _virtualservice(i: int, n_services: int) -> Obj:
    return {"metadata": {"name": f"vs-{i}", "namespace": NS},
            "spec": {"hosts": [f"svc-{i % n_services}"], "http": [
                {"match": [{"uri": {"prefix": f"/p{i}"}}],
                 "route": [{"destination": {"host": f"svc-{(i + 1) % n_services}"}}],
                 "timeout": "2s", "retries": {"attempts": 3, "retryOn": "5xx"}}]}}


def per_call(fn: Callable[[], object], *, seconds: float) -> float:
    """Seconds per call, run for about `seconds`."""
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / n


def _record_rows(seconds: float) -> list[list[Any]]:
    """µs per finished request's flow record: into the ring alone, and with the Prometheus
    metrics sink the node proxy adds (knet/mesh/metrics.py), over 50 label sets."""
    recs = [FlowRecord(time=0.0, node="node-1", protocol="http", client_ip="10.244.1.5",
                       client_port=40000, service=f"{NS}/svc-{i % 10}", service_port=80,
                       client_pod=f"{NS}/client-{i % 5}", endpoint_pod=f"{NS}/svc-{i % 10}-0",
                       status=200 if i % 7 else 503, duration=0.002, route="r")
            for i in range(50)]
    plain, metered = FlowRing(), FlowRing()
    metrics = MeshMetrics(workloads=lambda pod: pod.split("/")[1].rsplit("-", 1)[0])
    metered.sinks.append(metrics.observe)
    it1, it2 = itertools.cycle(recs), itertools.cycle(recs)
    return [["record", "FlowRing.record (anchor)",
             per_call(lambda: plain.record(next(it1)), seconds=seconds) * 1e6],
            ["record", "FlowRing.record + Prometheus metrics sink",
             per_call(lambda: metered.record(next(it2)), seconds=seconds) * 1e6]]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench mesh")
    parser.add_argument("--routes", type=int, default=1000)
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    parser.add_argument("--wire-seconds", type=float, default=5.0,
                        help="wrk run per row of the mTLS on/off table (0: skip it)")
    parser.add_argument("--wire-rounds", type=int, default=3)
    args = parser.parse_args(argv)
    svcs, slices = _world(args.services)
    services = build_table(svcs, slices)
    routes = [_httproute(i, args.services) for i in range(args.routes)]
    parsed = [HTTPRoute.model_validate(r) for r in routes]  # what a mesh source keeps
    vss = [_virtualservice(i, args.services) for i in range(args.services)]
    rows: list[list[Any]] = [
        ["rebuild", f"proxy ServiceTable ({args.services} services)",
         per_call(lambda: build_table(svcs, slices), seconds=args.seconds) * 1e3],
        ["rebuild", f"mesh table, {args.routes} HTTPRoutes",
         per_call(lambda: compile_table(services, httproutes=routes),
                  seconds=args.seconds) * 1e3],
        ["rebuild", f"mesh table, {args.routes} HTTPRoutes parsed on watch",
         per_call(lambda: compile_table(services, httproutes=parsed),
                  seconds=args.seconds) * 1e3],
        ["rebuild", f"mesh table, {len(vss)} VirtualServices",
         per_call(lambda: compile_table(services, virtualservices=vss),
                  seconds=args.seconds) * 1e3]]
    mesh = compile_table(services, httproutes=routes)
    busiest = max(mesh.ports.values(), key=lambda p: len(p.routes))
    headers = {"x-v": "2", "host": "svc-0"}
    lookups = {busiest.key: busiest}

    def lookup() -> object:
        found = find_route(busiest.routes, "GET", "/nomatch/at/all?x=1", headers)
        return found and pick_backend(found[0], 0.5)

    rows += [["lookup", "dict lookup", per_call(lambda: lookups.get(busiest.key),
                                                seconds=args.seconds / 4) * 1e6],
             ["lookup", f"find_route miss over {len(busiest.routes)} routes + pick",
              per_call(lookup, seconds=args.seconds / 4) * 1e6]]
    world = World(services)
    rows.append(["rebuild", f"+ north-south pass over {args.routes} HTTPRoutes (no Gateway)",
                 per_call(lambda: add_north_south(mesh, world, httproutes=parsed, gateways={},
                                                  ingresses=(), namespace_labels={}),
                          seconds=args.seconds) * 1e3])
    rows += _record_rows(args.seconds / 4)
    print(table(["what", "work", "ms (rebuild) / µs (lookup, record)"], rows, value_col=2,
                group_col=0, ratio_title="vs anchor", title="knet.mesh route table"))
    if args.wire_seconds > 0:
        from bench import meshwire

        print("\nknet.mesh HTTP hop, mTLS on/off (wrk -t1 -c16, keep-alive, medians of "
              f"{args.wire_rounds} interleaved rounds)")
        print(meshwire.report(meshwire.run(args.wire_seconds, args.wire_rounds)))
    return 0
