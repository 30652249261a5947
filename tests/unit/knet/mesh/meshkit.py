"""Builders for mesh table tests: Services with endpoints (as the proxy's ServiceTable),
pod labels, HTTPRoutes and VirtualServices as wire dicts, and a request helper."""

from __future__ import annotations

from typing import Any

from knet.mesh.match import find_route
from knet.mesh.types import PortRoutes, Route, RouteTable
from knet.proxy.config import ServiceTable, build_table

NS = "gateway-conformance-mesh"
Obj = dict[str, Any]


def service(name: str, ns: str = NS, ports: tuple[int, ...] = (80, 8080),
            app_protocol: str | None = "http", pods: int = 2,
            ip: str = "10.96.0.10") -> tuple[Obj, Obj]:
    """A Service and its EndpointSlice: pods `<name>-0..` at 10.244.x.y on each port."""
    svc = {"metadata": {"name": name, "namespace": ns},
           "spec": {"clusterIP": ip, "ports": [
               {"name": f"p{p}", "port": p, "protocol": "TCP", "targetPort": p,
                **({"appProtocol": app_protocol} if app_protocol else {})} for p in ports]}}
    base = sum(map(ord, name)) % 200
    sl = {"metadata": {"name": f"{name}-x", "namespace": ns,
                       "labels": {"kubernetes.io/service-name": name}},
          "addressType": "IPv4",
          "ports": [{"name": f"p{p}", "port": p, "protocol": "TCP"} for p in ports],
          "endpoints": [{"addresses": [f"10.244.{base}.{i + 1}"], "conditions": {"ready": True},
                         "targetRef": {"kind": "Pod", "namespace": ns, "name": f"{name}-{i}"}}
                        for i in range(pods)]}
    return svc, sl


def services(*pairs: tuple[Obj, Obj]) -> ServiceTable:
    svcs = {f"{s['metadata']['namespace']}/{s['metadata']['name']}": s for s, _ in pairs}
    slices = {f"{s['metadata']['namespace']}/{s['metadata']['name']}": [sl] for s, sl in pairs}
    return build_table(svcs, slices)


def httproute(name: str, rules: list[Obj], *, parent: str = "echo", ns: str = NS,
              port: int | None = None, created: str = "2026-01-01T00:00:00Z",
              parent_ns: str | None = None) -> Obj:
    ref: Obj = {"group": "", "kind": "Service", "name": parent}
    if port is not None:
        ref["port"] = port
    if parent_ns is not None:
        ref["namespace"] = parent_ns
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": created,
                         "generation": 1},
            "spec": {"parentRefs": [ref], "rules": rules}}


def virtualservice(name: str, hosts: list[str], http: list[Obj], *, ns: str = NS,
                   created: str = "2026-01-01T00:00:00Z") -> Obj:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": created},
            "spec": {"hosts": hosts, "http": http}}


def destinationrule(name: str, host: str, spec: Obj | None = None, *, ns: str = NS) -> Obj:
    return {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"host": host, **(spec or {})}}


def port(table: RouteTable, key: str) -> PortRoutes:
    pr = table.get(key)
    assert pr is not None, f"{key} not meshed; meshed: {sorted(table.ports)}"
    return pr


def route_for(table: RouteTable, key: str, target: str = "/", method: str = "GET",
              headers: dict[str, str] | None = None, client_ns: str | None = None
              ) -> Route | None:
    pr = port(table, key)
    found = find_route(pr.for_client(client_ns), method, target,
                       {k.lower(): v for k, v in (headers or {}).items()})
    return found[0] if found else None


def backend_of(table: RouteTable, key: str, target: str = "/", **kw: Any) -> str:
    """The only backend service a request lands on ("ns/name:port"), or "404"."""
    r = route_for(table, key, target, **kw)
    if r is None:
        return "404"
    names = {b.name for b in r.backends if b.weight}
    assert len(names) == 1, names
    return names.pop()
