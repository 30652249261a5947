"""Istio VirtualServices compiled into route lists, first match wins as Istio tries them.

A VirtualService applies to the mesh when `gateways` is empty or names `mesh`, for each
host that is a Service here ("reviews", "reviews.ns", "reviews.ns.svc.cluster.local").
Each (http route, match) becomes one `Route` in written order, so a prefix rewrite knows
its prefix; `match.port` keeps a match to that service port. Destinations resolve like
hosts, their port defaulting to the request's port (or the Service's only port); weights
default as Istio's do (one destination: 100). Retries default to Istio's (2 attempts on
connect-failure, refused-stream, unavailable, 503).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from control.models.meshgateway import parse_duration
from control.models.meshistio import (
    Destination,
    HeaderOperations,
    HTTPMatchRequest,
    IstioHTTPRoute,
    VirtualService,
)
from control.models.meshistio import StringMatch as IstioMatch
from knet.mesh.gateway import condition
from knet.mesh.types import (
    Backend,
    Fault,
    HeaderMatch,
    HeaderOps,
    Match,
    Mirror,
    RetryPolicy,
    Rewrite,
    Route,
    StringMatch,
)
from knet.mesh.world import World, resolve_host

__all__ = ["IstioRoutes", "compile_virtualservices"]

_ISTIO_RETRY_ON = frozenset({"connect-failure", "refused-stream", "unavailable", "503"})


@dataclass
class IstioRoutes:
    routes: dict[str, list[Route]] = field(default_factory=dict)   # port key -> routes
    owners: dict[str, str] = field(default_factory=dict)           # port key -> "VS ns/name"
    status: dict[str, list[dict[str, object]]] = field(default_factory=dict)


def _sm(m: IstioMatch, ignore_case: bool = False) -> StringMatch:
    if m.exact is not None:
        return StringMatch("exact", m.exact, ignore_case)
    if m.prefix is not None:
        return StringMatch("prefix", m.prefix, ignore_case)
    return StringMatch("regex", m.regex or "", ignore_case)


def _match(m: HTTPMatchRequest) -> Match:
    headers = [HeaderMatch(k.lower(), _sm(v)) for k, v in m.headers.items()]
    headers += [HeaderMatch(k.lower(), _sm(v), invert=True)
                for k, v in m.without_headers.items()]
    method = m.method.exact if m.method is not None else None
    if m.method is not None and method is None:  # a method prefix/regex: match it as a header
        headers.append(HeaderMatch(":method", _sm(m.method)))
    return Match(_sm(m.uri, m.ignore_uri_case) if m.uri else None, method, tuple(headers),
                 tuple((k, _sm(v)) for k, v in m.query_params.items()))


def _ops(h: HeaderOperations | None) -> HeaderOps:
    if h is None:
        return HeaderOps()
    return HeaderOps(tuple(h.set.items()), tuple(h.add.items()), tuple(h.remove))


def _both(a: HeaderOps, b: HeaderOps) -> HeaderOps:
    return HeaderOps(a.set + b.set, a.add + b.add, a.remove + b.remove)


class _Compiler:
    def __init__(self, world: World, vs: VirtualService) -> None:
        self.world, self.ns = world, vs.metadata.namespace or "default"
        self.problems: list[str] = []

    def backend(self, d: Destination, weight: int, port: int) -> Backend:
        key = resolve_host(d.host, self.ns)
        if key is None:
            self.problems.append(f"destination host {d.host} is not a cluster Service")
            return Backend(d.host, port, weight, status=503, reason=f"unknown host {d.host}")
        number = d.port.number if d.port else (
            port if self.world.service_port(key, port) else None)
        b = self.world.backend(key, number, weight, subset=d.subset or "", missing_status=503)
        if b.status:
            self.problems.append(f"destination {d.host}: {b.reason}")
        return b

    def routes(self, name: str, hi: int, r: IstioHTTPRoute, port: int) -> list[Route]:
        n = len(r.route)
        weights = [d.weight if d.weight is not None else (100 if n == 1 else 0)
                   for d in r.route]
        if n > 1 and all(d.weight is None for d in r.route):
            weights = [1] * n
        backends = []
        for d, w in zip(r.route, weights, strict=True):
            b = self.backend(d.destination, w, port)
            if d.headers is not None:
                b = Backend(b.service, b.port, b.weight, b.subset, b.endpoints, b.status,
                            b.reason, b.lb, b.pool, b.outlier, _ops(d.headers.request),
                            _ops(d.headers.response))
            backends.append(b)
        retry = RetryPolicy(retry_on=_ISTIO_RETRY_ON)
        if r.retries is not None:
            on = frozenset(s.strip() for s in (r.retries.retry_on or "").split(",") if s.strip())
            retry = RetryPolicy(r.retries.attempts, parse_duration(r.retries.per_try_timeout)
                                if r.retries.per_try_timeout else None, on or _ISTIO_RETRY_ON)
        fault = None
        if r.fault is not None:
            dl, a = r.fault.delay, r.fault.abort
            fault = Fault(parse_duration(dl.fixed_delay) if dl else 0.0,
                          (dl.percentage.value if dl.percentage else 100.0) if dl else 0.0,
                          a.http_status if a else 0,
                          (a.percentage.value if a.percentage else 100.0) if a else 0.0)
        mirror = None
        if r.mirror is not None:
            mirror = Mirror(self.backend(r.mirror, 1, port),
                            r.mirror_percentage.value if r.mirror_percentage else 100.0)
        req = _ops(r.headers.request if r.headers else None)
        resp = _ops(r.headers.response if r.headers else None)
        status, reason = 0, ""
        if r.redirect is not None:
            status, reason = 501, "redirects are not supported by knet's mesh yet"
        elif sum(b.weight for b in backends) == 0:
            status, reason = 503, "every destination has weight 0"
        out = []
        matches = [m for m in r.match if m.port in (None, port)] if r.match else [None]
        for mi, m in enumerate(matches):
            match = _match(m) if m is not None else Match()
            rw = None
            if r.rewrite is not None:
                prefix = m.uri.prefix if m is not None and m.uri is not None else None
                rw = Rewrite(prefix=prefix, replacement=r.rewrite.uri if prefix else None,
                             full_path=r.rewrite.uri if not prefix else None,
                             authority=r.rewrite.authority)
            label = r.name or f"http[{hi}]"
            mname = (m.name if m is not None and m.name else f"match[{mi}]")
            out.append(Route(f"virtualservice {name} {label} {mname}", (match,),
                             tuple(backends), parse_duration(r.timeout) if r.timeout else None,
                             retry, fault, req, resp, rw, mirror, status, reason))
        return out


def compile_virtualservices(world: World, services: list[VirtualService]) -> IstioRoutes:
    out = IstioRoutes()
    for vs in services:
        if vs.spec is None:
            continue
        ns = vs.metadata.namespace or "default"
        name = f"{ns}/{vs.metadata.name}"
        if vs.spec.gateways and "mesh" not in vs.spec.gateways:
            continue
        c = _Compiler(world, vs)
        conflicts = []
        for host in vs.spec.hosts:
            key = resolve_host(host, ns)
            for sp in (world.ports.get(key) or {}).values() if key else ():
                owner = out.owners.setdefault(sp.key, f"VirtualService {name}")
                if owner != f"VirtualService {name}":
                    conflicts.append(f"{sp.key} is already routed by {owner} (older)")
                    continue
                out.routes[sp.key] = [r for hi, http in enumerate(vs.spec.http)
                                      for r in c.routes(name, hi, http, sp.port)]
        gen = vs.metadata.generation
        out.status[f"VirtualService {name}"] = [
            condition("Accepted", not conflicts, "Conflicted" if conflicts else "Accepted",
                      "; ".join(conflicts) or "routes the mesh's traffic", gen),
            condition("ResolvedRefs", not c.problems, "BackendNotFound" if c.problems
                      else "ResolvedRefs", "; ".join(c.problems) or "all references resolved",
                      gen)]
    return out
