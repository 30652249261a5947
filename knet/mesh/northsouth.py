"""North-south: Gateways of class `knet` and Ingresses of class `knet`, served by every node
proxy on its node address (the address the Gateway's `status.addresses` and the Ingress's
`status.loadBalancer.ingress` name, reachable from the host over the underlay).

`add_north_south(table, ...)` compiles, per listener port, one `PortRoutes` under the
synthetic key `gateway.knet.dev/http-PORT` into the route table, so the L7 path (`plan`)
serves it like any meshed port: a listener per node IP and port (`NorthSouthListeners`).
Listener isolation is by hostname: listener hostnames are tried most specific first (exact,
then longer wildcards, then none), each followed by a catch-all 404 for its hosts, so a
request whose Host selects a listener never falls through to another listener's routes.
Inside a listener, routes are in Gateway API precedence (the route's effective hostname,
exact first, then path/method/header/query). A Host's port is ignored when matching.

Attachment (parentRef -> listener, allowedRoutes, hostname intersection) is the control
plane's pure code (control/controllers/gateway.py), so the controller's attachedRoutes and
this data path agree; HTTPRoute `status.parents` for Gateway parents is computed here
(controllerName `knet.dev/gateway-controller`) and written with the mesh's statuses.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from control.controllers.gateway import CLASS_NAME, CONTROLLER_NAME, attaches
from control.models.meshgateway import HTTPRoute
from knet.mesh.gateway import RouteCompiler, condition
from knet.mesh.match import gateway_precedence
from knet.mesh.types import Backend, HeaderMatch, Match, PortRoutes, Route, RouteTable, StringMatch
from knet.mesh.world import World
from knet.proxy.config import ServicePort
from knet.proxy.tcp import ProxyContext

if TYPE_CHECKING:
    from knet.proxy.http import HttpListener

log = logging.getLogger(__name__)

__all__ = ["GATEWAY_NS", "NorthSouthListeners", "add_north_south", "listener_key",
           "listener_port"]

GATEWAY_NS = "gateway.knet.dev"  # not a valid namespace name: no Service key can collide
Obj = dict[str, Any]
SortKey = tuple[object, ...]


def listener_key(port: int) -> str:
    return f"{GATEWAY_NS}/http-{port}"


def listener_port(ip: str, port: int) -> ServicePort:
    """The synthetic service port an L7 listener on a node address serves."""
    return ServicePort(namespace=GATEWAY_NS, name=f"http-{port}", port_name="", cluster_ip=ip,
                       port=port, protocol="TCP", app_protocol="http")


def host_rank(host: str) -> tuple[int, int]:
    """Hostname precedence: exact first, then wildcards (longer first), then any host."""
    if not host:
        return (2, 0)
    return (1 if host.startswith("*.") else 0, -len(host))


def host_match(host: str) -> HeaderMatch:
    """The Host header falls under `host` (exact or `*.suffix`), any port ignored."""
    if host.startswith("*."):
        pattern = r"[^:]+" + re.escape(host[1:]) + r"(?::\d+)?"
    else:
        pattern = re.escape(host) + r"(?::\d+)?"
    return HeaderMatch("host", StringMatch("regex", pattern, ignore_case=True))


def _with_host(route: Route, m: Match, host: str, source: str) -> Route:
    match = replace(m, headers=(host_match(host), *m.headers)) if host else m
    return replace(route, source=source, matches=(match,))


@dataclass
class _Slot:
    """The routes of every listener with one hostname on one port."""
    host: str
    routes: list[tuple[SortKey, Route]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)


def _class_ok(gw: Obj) -> bool:
    return (gw.get("spec") or {}).get("gatewayClassName") == CLASS_NAME


class _Builder:
    def __init__(self, world: World, namespace_labels: Mapping[str, Mapping[str, str]]) -> None:
        self.world, self.labels = world, namespace_labels
        self.slots: dict[tuple[int, str], _Slot] = {}
        self.status: dict[str, list[dict[str, object]]] = {}

    def slot(self, port: int, host: str, name: str) -> _Slot:
        s = self.slots.setdefault((port, host), _Slot(host))
        if name not in s.names:
            s.names.append(name)
        return s

    def gateway_route(self, route: HTTPRoute, gateways: Mapping[str, Obj]) -> None:
        if route.spec is None or all(ref.is_service for ref in route.spec.parent_refs):
            return   # a mesh (GAMMA) route only: gateway.py's
        md = route.metadata
        ns, name = md.namespace or "default", f"{md.namespace or 'default'}/{md.name}"
        wire = route.to_wire()
        c = RouteCompiler(self.world, route)
        compiled = [(ri, mi, m, r) for ri, rule in enumerate(route.spec.rules)
                    for mi, (m, r) in enumerate(c.routes(ri, rule))]
        parents: list[dict[str, object]] = []
        for ref, raw in zip(route.spec.parent_refs, wire["spec"].get("parentRefs") or [],
                            strict=False):
            if ref.is_service:
                continue
            gw = gateways.get(f"{ref.namespace or ns}/{ref.name}")
            if gw is None or not _class_ok(gw):
                continue   # not a parent this controller serves: not ours to report on
            one = {**wire, "spec": {**wire["spec"], "parentRefs": [raw]}}
            got, reason, msg = attaches(one, gw, namespace_labels=self.labels)
            listeners = {str(x.get("name")): x for x in (gw.get("spec") or {}).get("listeners")
                         or []}
            for lname, hosts in got.items():
                port = int(listeners[lname].get("port") or 80)
                lhost = listeners[lname].get("hostname") or ""
                s = self.slot(port, lhost, f"gateway {ref.namespace or ns}/{ref.name} {lname}")
                for h in hosts or [""]:
                    s.routes.extend(((host_rank(h), gateway_precedence(m),
                                      md.creation_timestamp or "9999", name, ri, mi),
                                     _with_host(r, m, h, r.source)) for ri, mi, m, r in compiled)
            gen = md.generation
            accepted = condition("Accepted", bool(got), reason,
                                 msg or f"attached to {len(got)} listener(s)", gen)
            why, text = c.problems[0] if c.problems else ("ResolvedRefs",
                                                          "all references resolved")
            resolved = condition("ResolvedRefs", not c.problems, why,
                                 "; ".join(m for _, m in c.problems) or text, gen)
            parents.append({"parentRef": raw, "controllerName": CONTROLLER_NAME,
                            "conditions": [accepted, resolved]})
        if parents:
            self.status[f"HTTPRoute {name}"] = parents

    def ingress(self, ing: Obj) -> None:
        md, spec = ing.get("metadata") or {}, ing.get("spec") or {}
        if spec.get("ingressClassName") != CLASS_NAME:
            return
        ns, name = md.get("namespace") or "default", md.get("name") or ""
        age = md.get("creationTimestamp") or "9999"
        label = f"ingress {ns}/{name}"
        for i, rule in enumerate(spec.get("rules") or []):
            host = rule.get("host") or ""
            s = self.slot(80, host, label)
            for j, p in enumerate(((rule.get("http") or {}).get("paths")) or []):
                path = p.get("path") or "/"
                m = Match(StringMatch("exact", path) if p.get("pathType") == "Exact"
                          else StringMatch("path-prefix", path))
                r = Route(f"{label} rules[{i}] paths[{j}]", (m,),
                          (self._backend(ns, p.get("backend") or {}),))
                s.routes.append(((host_rank(host), gateway_precedence(m), age, label, i, j),
                                 _with_host(r, m, host, r.source)))
        default = spec.get("defaultBackend")
        if default:
            r = Route(f"{label} defaultBackend", (Match(),), (self._backend(ns, default),))
            last = ((3, 0), (9, 0, 0, 0, 0), age, label, 0, 0)  # after every path
            self.slot(80, "", label).routes.append((last, r))

    def _backend(self, ns: str, backend: Obj) -> Backend:
        svc = backend.get("service") or {}
        port = svc.get("port") or {}
        key = f"{ns}/{svc.get('name') or ''}"
        number = port.get("number")
        if number is None and port.get("name"):
            number = next((sp.port for sp in (self.world.ports.get(key) or {}).values()
                           if sp.port_name == port["name"]), None)
        return self.world.backend(key, number, 1, missing_status=503)

    def ports(self) -> dict[str, PortRoutes]:
        out: dict[int, list[Route]] = {}
        for (port, host), s in sorted(self.slots.items(),
                                      key=lambda kv: (kv[0][0], host_rank(kv[0][1]), kv[0][1])):
            lst = out.setdefault(port, [])
            lst.extend(r for _, r in sorted(s.routes, key=lambda e: e[0]))
            if host:   # listener isolation: its hosts never reach another listener
                lst.append(Route(f"{', '.join(s.names)}: no route matches", (Match(
                    headers=(host_match(host),)),), (), status=404,
                    reason=f"no route of the listener for {host} matches"))
        return {listener_key(p): PortRoutes(listener_key(p), f"{GATEWAY_NS}/http-{p}", p,
                                            tuple(routes)) for p, routes in out.items()}


def add_north_south(table: RouteTable, world: World, *, httproutes: Iterable[HTTPRoute],
                    gateways: Mapping[str, Obj], ingresses: Iterable[Obj],
                    namespace_labels: Mapping[str, Mapping[str, str]]) -> RouteTable:
    """The table plus the north-south listener ports and the Gateway parents' statuses."""
    b = _Builder(world, namespace_labels)
    for route in httproutes:
        b.gateway_route(route, gateways)
    for ing in ingresses:
        b.ingress(ing)
    if not b.slots and not b.status:
        return table
    status = dict(table.status)
    for key, parents in b.status.items():
        status[key] = [*status.get(key, []), *parents]
    return RouteTable({**table.ports, **b.ports()}, status)


class NorthSouthListeners:
    """The L7 listeners of the north-south ports on each node address: opened and closed
    to follow the table's `gateway.knet.dev/http-PORT` keys (reconciled by the mesh loop)."""

    def __init__(self, ctx: ProxyContext, node_ips: Iterable[str], *, timeout: float = 15.0,
                 retries: int = 2) -> None:
        self.ctx, self.node_ips = ctx, tuple(node_ips)
        self.timeout, self.retries = timeout, retries
        self.listeners: dict[tuple[str, int], HttpListener] = {}
        self.failed: set[tuple[str, int]] = set()

    def __repr__(self) -> str:
        return f"<NorthSouthListeners {sorted(self.listeners)}>"

    async def reconcile(self, table: RouteTable) -> None:
        from knet.proxy.http import HttpListener  # the proxy's kind; a cycle at import time

        prefix = f"{GATEWAY_NS}/http-"
        ports = {pr.port for key, pr in table.ports.items() if key.startswith(prefix)}
        want = {(ip, port) for ip in self.node_ips for port in ports}
        for lk in sorted(set(self.listeners) - want):
            await self.listeners.pop(lk).close()
            log.info("north-south: stopped serving %s:%d", *lk)
        self.failed &= want
        for ip, port in sorted(want - set(self.listeners) - self.failed):
            ln = HttpListener(self.ctx, listener_port(ip, port), ip=ip, port=port,
                              retries=self.retries, timeout=self.timeout)
            try:
                await ln.start()
            except OSError as exc:
                self.failed.add((ip, port))   # reported once; retried when the port returns
                log.error("north-south: cannot listen on %s:%d (%s); Gateways and Ingresses "
                          "on that port are not served on this node", ip, port,
                          exc.strerror or exc)
                continue
            self.listeners[(ip, port)] = ln
            log.info("north-south: serving Gateways/Ingresses on %s:%d", ip, port)

    async def close(self) -> None:
        for ln in self.listeners.values():
            await ln.close()
        self.listeners.clear()
