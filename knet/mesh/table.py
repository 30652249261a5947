"""The mesh compiler: Services, endpoints, pod and namespace labels, HTTPRoutes,
VirtualServices, DestinationRules and ReferenceGrants in; one `RouteTable` out.

    table = compile_table(services, httproutes=..., virtualservices=..., ...)

Pure: wire dicts (or already-parsed models) in, frozen data out, no sockets, no clock,
so the node proxy can rebuild it on any change and swap it in one assignment. A port is
meshed (its HTTP goes through the L7 path per request) when its `appProtocol` is http,
or its namespace is labelled `istio.io/dataplane-mode=ambient` and the port is HTTP by
name (`http`, `http-*`) or a route attaches to it. One API governs a port: HTTPRoutes
(GAMMA) first, else the oldest VirtualService; a VirtualService that loses is reported
with Accepted=False (Conflicted). A meshed port no route governs gets a default route to
its own endpoints (DestinationRule policies still apply). Requests no route matches are
answered 404.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from control.models.meshgateway import HTTPRoute, ReferenceGrant
from control.models.meshistio import DestinationRule, VirtualService
from control.models.meta import TopLevel
from knet.mesh.gateway import compile_httproutes, condition
from knet.mesh.istio import compile_virtualservices
from knet.mesh.types import Match, PortRoutes, Route, RouteTable
from knet.mesh.world import World
from knet.proxy.config import ServicePort, ServiceTable

__all__ = ["AMBIENT_LABEL", "compile_table", "is_meshed"]

AMBIENT_LABEL = "istio.io/dataplane-mode"
Obj = dict[str, Any]
M = TypeVar("M", bound=TopLevel)


def _parse(model: type[M], objs: Iterable[Obj | M]) -> list[M]:
    """Models, oldest first (ties by namespace/name), as the precedence rules want them."""
    out = [o if isinstance(o, model) else model.model_validate(o) for o in objs]
    return sorted(out, key=lambda o: (o.metadata.creation_timestamp or "9999",
                                      o.metadata.namespace or "", o.metadata.name or ""))


def is_meshed(sp: ServicePort, *, ambient: bool, routed: bool) -> bool:
    if sp.protocol != "TCP":
        return False
    if sp.is_http:
        return True
    name = sp.port_name.lower()
    return ambient and (routed or name == "http" or name.startswith("http-"))


def compile_table(services: ServiceTable, *, httproutes: Iterable[Obj | HTTPRoute] = (),
                  virtualservices: Iterable[Obj | VirtualService] = (),
                  destinationrules: Iterable[Obj | DestinationRule] = (),
                  referencegrants: Iterable[Obj | ReferenceGrant] = (),
                  pod_labels: Mapping[str, Mapping[str, str]] | None = None,
                  namespace_labels: Mapping[str, Mapping[str, str]] | None = None,
                  ) -> RouteTable:
    world = World(services, pod_labels or {}, namespace_labels or {},
                  _parse(DestinationRule, destinationrules),
                  _parse(ReferenceGrant, referencegrants))
    gw = compile_httproutes(world, _parse(HTTPRoute, httproutes))
    ist = compile_virtualservices(world, _parse(VirtualService, virtualservices))
    status = {**gw.status, **ist.status}
    ports: dict[str, PortRoutes] = {}
    for key, sp in services.items():
        routed = key in gw.owners or key in ist.owners
        if not is_meshed(sp, ambient=world.ambient(sp.namespace), routed=routed):
            continue
        if key in gw.owners:
            producer = tuple(r for _, r in sorted(gw.producer.get(key, []),
                                                  key=lambda e: e[0]))
            consumer = {ns: tuple(r for _, r in sorted(lst, key=lambda e: e[0]))
                        for (k, ns), lst in gw.consumer.items() if k == key}
            ports[key] = PortRoutes(key, sp.service, sp.port, producer or _default(world, sp),
                                    consumer, "gateway")
            if key in ist.owners:
                _lost(status, ist.owners[key], key, gw.owners[key])
        elif key in ist.owners:
            ports[key] = PortRoutes(key, sp.service, sp.port, tuple(ist.routes[key]),
                                    api="istio")
        else:
            ports[key] = PortRoutes(key, sp.service, sp.port, _default(world, sp))
    return RouteTable(ports, status)


def _default(world: World, sp: ServicePort) -> tuple[Route, ...]:
    return (Route("default", (Match(),), (world.backend(sp.service, sp.port, 1),)),)


def _lost(status: dict[str, list[dict[str, object]]], vs: str, key: str, owner: str) -> None:
    conds = status.get(vs) or []
    msg = f"{key} is routed by {owner}: HTTPRoutes take precedence over VirtualServices"
    status[vs] = [condition("Accepted", False, "Conflicted", msg, None)
                  if c.get("type") == "Accepted" else c for c in conds]
