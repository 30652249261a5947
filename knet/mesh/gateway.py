"""Gateway API HTTPRoutes with Service parents (GAMMA) compiled into route lists.

Each (rule, match) becomes one `Route` with one match, so a port's list can be sorted in
Gateway API precedence across every route attached to it (exact path, longest prefix,
method, header count, query count; then the oldest route, its name, the rule order).
Backends keep their weights even when invalid: the share an invalid backend would get is
answered with 500, as the spec requires, and the route's status says why (ResolvedRefs
False: BackendNotFound, RefNotPermitted, InvalidKind). A parent that is no Service port
gives Accepted False (NoMatchingParent).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from control.models.meshgateway import (
    HTTPBackendRef,
    HTTPHeaderFilter,
    HTTPRoute,
    HTTPRouteFilter,
    HTTPRouteMatch,
    HTTPRouteRule,
    ParentReference,
    parse_duration,
)
from knet.mesh.match import gateway_precedence
from knet.mesh.types import (
    Backend,
    HeaderMatch,
    HeaderOps,
    Match,
    Mirror,
    RetryPolicy,
    Rewrite,
    Route,
    StringMatch,
)
from knet.mesh.world import World

__all__ = ["CONTROLLER", "GatewayRoutes", "RouteCompiler", "compile_httproutes", "condition"]

CONTROLLER = "knet.io/mesh"
_PATH_KIND = {"Exact": "exact", "PathPrefix": "path-prefix", "RegularExpression": "regex"}
_HDR_KIND = {"Exact": "exact", "RegularExpression": "regex"}
SortKey = tuple[object, ...]


def condition(type_: str, ok: bool, reason: str, message: str,
              generation: int | None) -> dict[str, object]:
    return {"type": type_, "status": "True" if ok else "False", "reason": reason,
            "message": message, "observedGeneration": generation or 0}


@dataclass
class GatewayRoutes:
    """Routes per port key (producer) and per (port key, client namespace) (consumer)."""
    producer: dict[str, list[tuple[SortKey, Route]]] = field(default_factory=dict)
    consumer: dict[tuple[str, str], list[tuple[SortKey, Route]]] = field(default_factory=dict)
    status: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)  # port key -> first route naming it


def _match(m: HTTPRouteMatch) -> Match:
    path = StringMatch(_PATH_KIND[m.path.type], m.path.value) if m.path else None  # type: ignore[arg-type]
    headers = tuple(HeaderMatch(h.name.lower(), StringMatch(_HDR_KIND[h.type], h.value))  # type: ignore[arg-type]
                    for h in m.headers)
    query = tuple((q.name, StringMatch(_HDR_KIND[q.type], q.value))  # type: ignore[arg-type]
                  for q in m.query_params)
    return Match(path, m.method, headers, query)


def _ops(f: HTTPHeaderFilter | None) -> HeaderOps:
    if f is None:
        return HeaderOps()
    return HeaderOps(tuple((h.name, h.value) for h in f.set),
                     tuple((h.name, h.value) for h in f.add), tuple(f.remove))


def _filters(filters: list[HTTPRouteFilter]) -> tuple[HeaderOps, HeaderOps]:
    req, resp = HeaderOps(), HeaderOps()
    for f in filters:
        if f.type == "RequestHeaderModifier":
            req = _ops(f.request_header_modifier)
        elif f.type == "ResponseHeaderModifier":
            resp = _ops(f.response_header_modifier)
    return req, resp


class RouteCompiler:
    """One HTTPRoute's rules into backends and matches, its problems kept for its status
    (the mesh's GAMMA routes here, north-south routes in northsouth.py)."""

    def __init__(self, world: World, route: HTTPRoute) -> None:
        self.world, self.route = world, route
        self.ns = route.metadata.namespace or "default"
        self.problems: list[tuple[str, str]] = []  # (reason, message)

    def backend(self, ref: HTTPBackendRef) -> Backend:
        ns = ref.namespace or self.ns
        key = f"{ns}/{ref.name}"
        req, resp = _filters(ref.filters)
        if ref.group not in ("", "core") or ref.kind != "Service":
            return self._bad(key, ref, "InvalidKind", f"backendRef {ref.group}/{ref.kind} "
                             f"{ref.name}: only core Services are supported")
        if not self.world.grant_allows(from_ns=self.ns, from_kind="HTTPRoute", to_ns=ns,
                                       to_name=ref.name):
            return self._bad(key, ref, "RefNotPermitted", f"backendRef Service {key}: no "
                             f"ReferenceGrant in {ns} allows HTTPRoutes from {self.ns}")
        b = self.world.backend(key, ref.port, ref.weight)
        if b.status:
            self.problems.append(("BackendNotFound", f"backendRef {key}:{ref.port}: {b.reason}"))
            return b
        return Backend(b.service, b.port, b.weight, b.subset, b.endpoints, lb=b.lb,
                       pool=b.pool, outlier=b.outlier, request_headers=req,
                       response_headers=resp)

    def _bad(self, key: str, ref: HTTPBackendRef, reason: str, msg: str) -> Backend:
        self.problems.append((reason, msg))
        return Backend(key, ref.port or 0, ref.weight, status=500, reason=msg)

    def routes(self, ri: int, rule: HTTPRouteRule) -> list[tuple[Match, Route]]:
        backends = tuple(self.backend(ref) for ref in rule.backend_refs)
        req, resp = _filters(rule.filters)
        mirror = next((f.request_mirror for f in rule.filters if f.request_mirror), None)
        rewrite = next((f.url_rewrite for f in rule.filters if f.url_rewrite), None)
        timeout = per_try = None
        if rule.timeouts is not None:
            timeout = parse_duration(rule.timeouts.request) if rule.timeouts.request else None
            per_try = (parse_duration(rule.timeouts.backend_request)
                       if rule.timeouts.backend_request else None)
        retry = RetryPolicy(per_try_timeout=per_try)
        if rule.retry is not None:
            retry = RetryPolicy(rule.retry.attempts if rule.retry.attempts is not None else 2,
                                per_try, frozenset(str(c) for c in rule.retry.codes)
                                | {"connect-failure", "refused-stream"})
        status, reason = 0, ""
        if not backends:
            status, reason = 500, "the rule has no backendRefs"
        elif sum(b.weight for b in backends) == 0:
            status, reason = 500, "every backendRef of the rule has weight 0"
        m_mirror = None
        if mirror is not None:
            ref = mirror.backend_ref
            pct = (mirror.fraction.numerator * 100 / mirror.fraction.denominator
                   if mirror.fraction else mirror.percent if mirror.percent is not None
                   else 100)
            m_mirror = Mirror(self.world.backend(f"{ref.namespace or self.ns}/{ref.name}",
                                                 ref.port, 1), float(pct))
        name = f"{self.ns}/{self.route.metadata.name}"
        out = []
        for mi, m in enumerate(rule.matches):
            match = _match(m)
            rw = None
            if rewrite is not None:
                p = rewrite.path
                rw = Rewrite(prefix=m.path.value if m.path else "/",
                             replacement=p.replace_prefix_match if p else None,
                             full_path=p.replace_full_path if p else None,
                             authority=rewrite.hostname)
            label = rule.name or f"rules[{ri}]"
            out.append((match, Route(
                f"httproute {name} {label} matches[{mi}]", (match,), backends,
                timeout=timeout, retry=retry, request_headers=req, response_headers=resp,
                rewrite=rw, mirror=m_mirror, status=status, reason=reason)))
        return out


def _parent_ports(world: World, ref: ParentReference, ns: str) -> tuple[list[str], str]:
    key = f"{ref.namespace or ns}/{ref.name}"
    ports = world.ports.get(key)
    if not ports:
        return [], f"parent Service {key} not found"
    if ref.port is not None:
        sp = ports.get(ref.port)
        return ([sp.key], "") if sp else ([], f"parent Service {key} has no port {ref.port}")
    return [sp.key for sp in ports.values()], ""


def compile_httproutes(world: World, routes: list[HTTPRoute]) -> GatewayRoutes:
    out = GatewayRoutes()
    for route in routes:
        if route.spec is None:
            continue
        ns = route.metadata.namespace or "default"
        name = f"{ns}/{route.metadata.name}"
        age = route.metadata.creation_timestamp or "9999"
        c = RouteCompiler(world, route)
        compiled = [(ri, mi, m, r) for ri, rule in enumerate(route.spec.rules)
                    for mi, (m, r) in enumerate(c.routes(ri, rule))]
        parents: list[dict[str, object]] = []
        for ref in route.spec.parent_refs:
            if not ref.is_service:
                continue  # a Gateway parent: not the mesh's (gateways are a later slice)
            keys, problem = _parent_ports(world, ref, ns)
            svc_ns = ref.namespace or ns
            for key in keys:
                out.owners.setdefault(key, f"HTTPRoute {name}")
                bucket = (out.producer.setdefault(key, []) if svc_ns == ns
                          else out.consumer.setdefault((key, ns), []))
                bucket.extend(((gateway_precedence(m), age, name, ri, mi), r)
                              for ri, mi, m, r in compiled)
            gen = route.metadata.generation
            accepted = condition("Accepted", not problem, "NoMatchingParent" if problem
                                 else "Accepted", problem or "attached to the mesh", gen)
            reason, msg = c.problems[0] if c.problems else ("ResolvedRefs",
                                                            "all references resolved")
            resolved = condition("ResolvedRefs", not c.problems, reason,
                                 "; ".join(m for _, m in c.problems) or msg, gen)
            parents.append({"parentRef": ref.to_wire(), "controllerName": CONTROLLER,
                            "conditions": [accepted, resolved]})
        out.status[f"HTTPRoute {name}"] = parents
    return out
