"""Istio's PeerAuthentication and AuthorizationPolicy decisions, as pure functions.

    mode = mtls_mode(peerauths, namespace="foo", labels={"app": "httpbin"}, port=8080)
    d = authorize(policies, Peer(principal="cluster.local/ns/foo/sa/sleep", ...),
                  Target(port=8080, method="GET", path="/ip"), l7=True)

PeerAuthentication: a workload-selector policy in the workload's namespace wins over the
namespace-wide one, which wins over the mesh-wide one in the root namespace (istio-system);
among equals the oldest; UNSET inherits; portLevelMtls overrides for that port; nothing at
all is PERMISSIVE. AuthorizationPolicy follows Istio's order: CUSTOM (not supported: it
never matches), then any matching DENY denies, then if ALLOW policies exist one must match
(else "allow nothing"); AUDIT only marks the decision. At L4 (the server-side proxy, as
ztunnel) a rule naming L7 attributes (paths, methods, hosts, request principals) is made
stricter, as Istio does: an ALLOW rule with them matches nothing, a DENY rule ignores them.
Nothing here does I/O: the node proxy calls it per connection / request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from control.models.meshsecurity import (
    AuthorizationPolicy,
    Operation,
    PeerAuthentication,
    Rule,
    Source,
)

__all__ = ["ROOT_NAMESPACE", "Decision", "Peer", "Target", "authorize", "mtls_mode",
           "policies_for_service", "policies_for_workload", "principal_of"]

ROOT_NAMESPACE = "istio-system"
TRUST_DOMAIN = "cluster.local"


def principal_of(spiffe: str) -> str:
    """spiffe://cluster.local/ns/foo/sa/bar -> cluster.local/ns/foo/sa/bar (Istio's form)."""
    return spiffe.removeprefix("spiffe://")


@dataclass(frozen=True, slots=True)
class Peer:
    """Who is asking: the verified identity (None: plaintext, unauthenticated) and source IP."""
    ip: str
    principal: str | None = None     # "cluster.local/ns/NS/sa/SA"

    @property
    def namespace(self) -> str | None:
        if not self.principal:
            return None
        parts = self.principal.split("/")
        return parts[2] if len(parts) >= 5 and parts[1] == "ns" else None


@dataclass(frozen=True, slots=True)
class Target:
    port: int
    method: str | None = None
    path: str | None = None
    host: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    policy: str = ""       # "ns/name" of the deciding policy ("" : no policy applied)
    why: str = ""          # "allowed by", "denied by", "no ALLOW policy matched"
    audit: str = ""        # "ns/name" of a matching AUDIT policy

    @property
    def verdict(self) -> str:
        return "ALLOW" if self.allowed else "DENY"


def _key(obj: AuthorizationPolicy | PeerAuthentication) -> str:
    return f"{obj.metadata.namespace}/{obj.metadata.name}"


def _age(obj: AuthorizationPolicy | PeerAuthentication) -> tuple[str, str, str]:
    md = obj.metadata
    return (md.creation_timestamp or "9999", md.namespace or "", md.name or "")


def _selects(match_labels: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in match_labels.items())


# -- PeerAuthentication ----------------------------------------------------------------------

def mtls_mode(peerauths: Iterable[PeerAuthentication], *, namespace: str,
              labels: Mapping[str, str], port: int | None = None,
              root: str = ROOT_NAMESPACE) -> str:
    """The effective mTLS mode of a workload (port: its target port): STRICT, PERMISSIVE or
    DISABLE."""
    workload: list[PeerAuthentication] = []
    ns_wide: list[PeerAuthentication] = []
    mesh: list[PeerAuthentication] = []
    for pa in sorted(peerauths, key=_age):
        spec = pa.spec
        if spec is None:
            continue
        ns = pa.metadata.namespace
        if spec.selector is None:
            if ns == namespace:
                ns_wide.append(pa)
            elif ns == root:
                mesh.append(pa)
        elif ns == namespace and _selects(spec.selector.match_labels, labels):
            workload.append(pa)
    mode = "PERMISSIVE"
    for level in (mesh[:1], ns_wide[:1], workload[:1]):  # broadest first, narrowest wins
        for pa in level:
            assert pa.spec is not None
            if pa.spec.mtls is not None and pa.spec.mtls.mode != "UNSET":
                mode = pa.spec.mtls.mode
            if port is not None and str(port) in pa.spec.port_level_mtls:
                pm = pa.spec.port_level_mtls[str(port)].mode
                if pm != "UNSET":
                    mode = pm
    return mode


# -- AuthorizationPolicy: which policies apply -----------------------------------------------

def policies_for_workload(policies: Iterable[AuthorizationPolicy], *, namespace: str,
                          labels: Mapping[str, str],
                          root: str = ROOT_NAMESPACE) -> list[AuthorizationPolicy]:
    """The policies a workload's server-side proxy enforces (L4): selector policies that
    select it, namespace-wide ones of its namespace, mesh-wide ones of the root namespace."""
    out = []
    for ap in policies:
        spec, ns = ap.spec, ap.metadata.namespace
        if spec.targets():
            continue
        if spec.selector is None:
            if ns in (namespace, root):
                out.append(ap)
        elif ns == namespace and _selects(spec.selector.match_labels, labels):
            out.append(ap)
    return sorted(out, key=_age)


def policies_for_service(policies: Iterable[AuthorizationPolicy], *, namespace: str,
                         name: str) -> list[AuthorizationPolicy]:
    """The policies bound by targetRefs to Service namespace/name (the waypoint's, L7)."""
    out = []
    for ap in policies:
        for ref in ap.spec.targets():
            if ref.kind == "Service" and ref.group in ("", "core") and ref.name == name \
                    and (ref.namespace or ap.metadata.namespace) == namespace \
                    and ap.metadata.namespace == namespace:
                out.append(ap)
                break
    return sorted(out, key=_age)


# -- AuthorizationPolicy: evaluation ---------------------------------------------------------

def authorize(policies: Sequence[AuthorizationPolicy], peer: Peer, target: Target, *,
              l7: bool) -> Decision:
    """Istio's order: DENY first, then ALLOW (allow-nothing when ALLOW policies exist and
    none matches); no policy at all allows."""
    audit = next((_key(ap) for ap in policies if ap.spec.action == "AUDIT"
                  and _matches(ap, peer, target, l7=l7, deny=True)), "")
    for ap in policies:
        if ap.spec.action == "DENY" and _matches(ap, peer, target, l7=l7, deny=True):
            return Decision(False, _key(ap), "denied by", audit)
    allows = [ap for ap in policies if ap.spec.action == "ALLOW"]
    for ap in allows:
        if _matches(ap, peer, target, l7=l7, deny=False):
            return Decision(True, _key(ap), "allowed by", audit)
    if allows:
        return Decision(False, ",".join(_key(ap) for ap in allows), "no ALLOW policy matched",
                        audit)
    return Decision(True, "", "", audit)


def _matches(ap: AuthorizationPolicy, peer: Peer, target: Target, *, l7: bool,
             deny: bool) -> bool:
    return any(_rule(r, peer, target, l7=l7, deny=deny) for r in ap.spec.rules)


def _rule(rule: Rule, peer: Peer, target: Target, *, l7: bool, deny: bool) -> bool:
    if rule.from_ and not any(_source(f.source, peer, l7=l7, deny=deny) for f in rule.from_):
        return False
    if rule.to and not any(_operation(t.operation, target, l7=l7, deny=deny) for t in rule.to):
        return False
    return all(_condition(c.key, c.values, c.not_values, peer, target, l7=l7, deny=deny)
               for c in rule.when)


def _any(values: Iterable[str], have: str | None, match: object) -> bool:
    return have is not None and any(match(v, have) for v in values)  # type: ignore[operator]


def _field(values: list[str], nots: list[str], have: str | None, match: object) -> bool:
    """A field of a rule: a value must match one of `values` (if set) and none of `nots`."""
    if values and not _any(values, have, match):
        return False
    return not (nots and _any(nots, have, match))


def _glob(pattern: str, value: str) -> bool:
    """Istio's string match: exact, "*", "prefix*" or "*suffix"."""
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    return value == pattern


def _in_block(block: str, ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(block, strict=False)
    except ValueError:
        return False


def _source(s: Source, peer: Peer, *, l7: bool, deny: bool) -> bool:
    if not l7 and not deny and (s.request_principals or s.not_request_principals):
        return False  # an L7 attribute at L4: the ALLOW rule matches nothing
    return (_field(s.principals, s.not_principals, peer.principal, _glob)
            and _field(s.namespaces, s.not_namespaces, peer.namespace, _glob)
            and _field(s.ip_blocks, s.not_ip_blocks, peer.ip, _in_block)
            and _field(s.remote_ip_blocks, s.not_remote_ip_blocks, peer.ip, _in_block))


def _operation(op: Operation, target: Target, *, l7: bool, deny: bool) -> bool:
    port = str(target.port)
    if not _field([str(p) for p in op.ports], [str(p) for p in op.not_ports], port,
                  lambda a, b: a == b):
        return False
    if not l7:
        has_l7 = op.paths or op.not_paths or op.methods or op.not_methods or op.hosts \
            or op.not_hosts
        return not has_l7 or deny  # stricter: ALLOW matches nothing, DENY ignores them
    return (_field(op.methods, op.not_methods, target.method, _glob)
            and _field(op.paths, op.not_paths, (target.path or "").split("?")[0], _glob)
            and _field(op.hosts, op.not_hosts, target.host,
                       lambda a, b: _glob(a.lower(), b.lower())))


def _condition(key: str, values: list[str], nots: list[str], peer: Peer, target: Target, *,
               l7: bool, deny: bool) -> bool:
    have: str | None
    match: object = _glob
    if key == "source.ip":
        have, match = peer.ip, _in_block
    elif key == "source.namespace":
        have = peer.namespace
    elif key == "source.principal":
        have = peer.principal
    elif key == "destination.port":
        have = str(target.port)
    elif key == "request.headers[:method]" or key == "request.method":
        if not l7:
            return deny
        have = target.method
    else:
        return deny and not l7  # an attribute knet does not know never matches an ALLOW
    return _field(values, nots, have, match)
