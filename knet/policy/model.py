"""NetworkPolicy semantics as data: policies + pods + namespaces -> who is isolated, and
which (peer, port) pairs each isolating policy rule allows. Pure: no sockets, no kernel.

Everything downstream reads this one model, so the kernel and the explanation cannot drift:
`nftrules.render` turns it into one node's nftables table, `explain.decide` answers "may
FROM reach TO on PORT/PROTO, and why". Upstream's rules, as in
k8s.io/api/networking/v1 and the netpol e2e suite:

- a policy selects pods of its own namespace (podSelector; empty = all); it isolates them for
  each of its policyTypes; a pod no policy selects (for a direction) is not isolated;
- isolated pods get only what the union of the selecting policies' rules allows (additive);
- a rule allows (any of its peers) x (any of its ports); no `from`/`to` = any peer, no `ports`
  = any port; a peer is an ipBlock (cidr minus excepts), or podSelector AND
  namespaceSelector (podSelector alone: the policy's namespace; namespaceSelector alone: all
  pods of the matching namespaces);
- a named port resolves against the destination pod's container ports (ingress: the
  isolated pod itself; egress: each destination pod); a name no container has allows nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from control.errors import BadRequest
from control.models.selectors import LabelSelector, selector_from_spec

__all__ = ["Allow", "Isolation", "Model", "NsInfo", "Peer", "PodInfo", "PortMatch",
           "compile_model", "namespace_info", "pod_info"]

NAME_LABEL = "kubernetes.io/metadata.name"
PROTOCOLS = ("tcp", "udp", "sctp")
Obj = Mapping[str, Any]


@dataclass(frozen=True)
class PodInfo:
    namespace: str
    name: str
    ip: str
    node: str
    labels: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)
    ports: tuple[tuple[str, int, str], ...] = ()     # (name, containerPort, protocol)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def named_port(self, name: str, protocol: str) -> int | None:
        return next((n for pname, n, proto in self.ports if pname == name and proto == protocol),
                    None)

    def __repr__(self) -> str:
        return f"<Pod {self.key} {self.ip or '-'} {self.node or '-'}>"


@dataclass(frozen=True)
class NsInfo:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class Peer:
    """Who a rule lets in or out: pod addresses (`ips`) or an ipBlock (`cidr` - `excepts`)."""
    what: str                               # "pods app=a in x", "ipBlock 10.0.0.0/8 except …"
    ips: frozenset[str] = frozenset()
    cidr: str = ""
    excepts: tuple[str, ...] = ()

    def contains(self, ip: str) -> bool:
        if not self.cidr:
            return ip in self.ips
        addr = ipaddress.ip_address(ip)
        return addr in ipaddress.ip_network(self.cidr, strict=False) and not any(
            addr in ipaddress.ip_network(e, strict=False) for e in self.excepts)


@dataclass(frozen=True)
class PortMatch:
    """A protocol and a port range (first=None: every port); `named` is an egress named
    port, resolved per destination pod."""
    protocol: str
    first: int | None = None
    last: int | None = None
    named: str = ""

    def __str__(self) -> str:
        if self.named:
            return f"{self.named}/{self.protocol}"
        if self.first is None:
            return f"any/{self.protocol}"
        span = str(self.first) if self.first == self.last else f"{self.first}-{self.last}"
        return f"{span}/{self.protocol}"


@dataclass(frozen=True)
class Allow:
    """One rule of one policy, resolved. `peers`/`ports` None = any; () = nothing."""
    policy: str                             # namespace/name
    index: int                              # the rule's index in spec.ingress / spec.egress
    peers: tuple[Peer, ...] | None
    ports: tuple[PortMatch, ...] | None

    @property
    def label(self) -> str:
        return f"{self.policy} rule {self.index}"

    def allows_nothing(self) -> bool:
        return self.peers == () or self.ports == ()


@dataclass(frozen=True)
class Isolation:
    """A pod isolated in one direction: by which policies, and what they allow."""
    pod: PodInfo
    direction: str                          # "ingress" | "egress"
    policies: tuple[str, ...]
    allows: tuple[Allow, ...]


@dataclass
class Model:
    pods: dict[str, PodInfo]                # by key
    by_ip: dict[str, PodInfo]
    ingress: dict[str, Isolation]           # by pod key; absent = not isolated
    egress: dict[str, Isolation]
    errors: list[str] = field(default_factory=list)   # policies skipped, and why

    def isolation(self, direction: str, pod_key: str) -> Isolation | None:
        return (self.ingress if direction == "ingress" else self.egress).get(pod_key)


# ---- from API objects ------------------------------------------------------------------

def pod_info(obj: Obj) -> PodInfo | None:
    """The pod as policies see it; None for pods that take no part (no IP yet, host
    network, finished)."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    ip = status.get("podIP") or ""
    if not ip or spec.get("hostNetwork") or status.get("phase") in ("Succeeded", "Failed"):
        return None
    ports = tuple((str(p["name"]), int(p["containerPort"]), str(p.get("protocol", "TCP")).lower())
                  for c in spec.get("containers") or [] for p in c.get("ports") or []
                  if p.get("name") and p.get("containerPort"))
    return PodInfo(namespace=meta.get("namespace") or "default", name=meta.get("name") or "",
                   ip=ip, node=spec.get("nodeName") or "", labels=dict(meta.get("labels") or {}),
                   ports=ports)


def namespace_info(obj: Obj) -> NsInfo:
    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    # upstream sets this label on every namespace; count on it even if a client removed it
    return NsInfo(name=name, labels={**(meta.get("labels") or {}), NAME_LABEL: name})


# ---- compilation -----------------------------------------------------------------------

class _PolicyError(ValueError):
    pass


def _selector(spec: Any, where: str) -> LabelSelector:
    try:
        return selector_from_spec(spec)
    except BadRequest as exc:
        raise _PolicyError(f"{where}: {exc}") from None


def _show(sel: LabelSelector) -> str:
    return str(sel) or "all"


def _peer(raw: Obj, ns: str, pods: Iterable[PodInfo], nss: Mapping[str, NsInfo],
          where: str) -> Peer:
    block = raw.get("ipBlock")
    if isinstance(block, Mapping):
        cidr = str(block.get("cidr") or "")
        excepts = tuple(str(e) for e in block.get("except") or [])
        try:
            ipaddress.ip_network(cidr, strict=False)
            for e in excepts:
                ipaddress.ip_network(e, strict=False)
        except ValueError as exc:
            raise _PolicyError(f"{where}.ipBlock: {exc}") from None
        shown = f"ipBlock {cidr}" + (f" except {', '.join(excepts)}" if excepts else "")
        return Peer(shown, cidr=cidr, excepts=excepts)
    has_pods, has_ns = raw.get("podSelector") is not None, raw.get("namespaceSelector") is not None
    pod_sel = _selector(raw.get("podSelector"), f"{where}.podSelector")
    if has_ns:
        ns_sel = _selector(raw.get("namespaceSelector"), f"{where}.namespaceSelector")
        in_ns = {n for n, info in nss.items() if ns_sel.matches(info.labels)}
        where_ns = f"namespaces {_show(ns_sel)}"
    else:
        in_ns, where_ns = {ns}, f"namespace {ns}"
    what = f"pods {_show(pod_sel)} in {where_ns}" if has_pods else f"all pods in {where_ns}"
    ips = frozenset(p.ip for p in pods if p.namespace in in_ns and pod_sel.matches(p.labels))
    return Peer(what, ips=ips)


def _ports(raw: Any, target: PodInfo | None, where: str) -> tuple[PortMatch, ...] | None:
    """None = any port. Named ports: resolved against `target` (ingress) or kept named."""
    if not raw:
        return None
    out = []
    for i, port in enumerate(raw):
        proto = str(port.get("protocol") or "TCP").lower()
        if proto not in PROTOCOLS:
            raise _PolicyError(f"{where}[{i}].protocol: unsupported protocol {proto!r}")
        value, end = port.get("port"), port.get("endPort")
        if value is None:
            out.append(PortMatch(proto))
        elif isinstance(value, str) and not value.isdigit():
            if target is None:
                out.append(PortMatch(proto, named=value))
            else:
                number = target.named_port(value, proto)
                if number is not None:        # no such container port: allows nothing
                    out.append(PortMatch(proto, number, number))
        else:
            first = int(value)
            out.append(PortMatch(proto, first, int(end) if end is not None else first))
    return tuple(out)


def _rules(pol: Obj, direction: str, pods: list[PodInfo],
           nss: Mapping[str, NsInfo]) -> list[tuple[int, tuple[Peer, ...] | None, Any]]:
    """A policy's rules in one direction with their peers resolved (once per policy: peers
    do not depend on the selected pod; ports may, so they stay raw)."""
    meta, spec = pol.get("metadata") or {}, pol.get("spec") or {}
    ns = meta.get("namespace") or "default"
    key = f"{ns}/{meta.get('name', '')}"
    peer_field = "from" if direction == "ingress" else "to"
    out = []
    for i, rule in enumerate(spec.get(direction) or []):
        where = f"networkpolicy {key}: spec.{direction}[{i}]"
        raw_peers = rule.get(peer_field)
        peers = None if not raw_peers else tuple(
            _peer(p, ns, pods, nss, f"{where}.{peer_field}[{j}]") for j, p in enumerate(raw_peers))
        _ports(rule.get("ports"), None, f"{where}.ports")       # refuse bad ports up front
        out.append((i, peers, rule.get("ports")))
    return out


def _allows(key: str, direction: str, target: PodInfo,
            rules: list[tuple[int, tuple[Peer, ...] | None, Any]]) -> list[Allow]:
    where = f"networkpolicy {key}: spec.{direction}"
    return [Allow(key, i, peers, _ports(raw, target if direction == "ingress" else None,
                                        f"{where}[{i}].ports"))
            for i, peers, raw in rules]


def _types(spec: Obj) -> tuple[str, ...]:
    types = spec.get("policyTypes")
    if not types:
        types = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
    return tuple(str(t).lower() for t in types)


def compile_model(policies: Iterable[Obj], pods: Iterable[PodInfo],
                  namespaces: Iterable[NsInfo]) -> Model:
    """The model for the whole cluster (every node renders its own pods from it)."""
    pod_list = sorted(pods, key=lambda p: p.key)
    nss = {n.name: NsInfo(n.name, {**n.labels, NAME_LABEL: n.name}) for n in namespaces}
    for p in pod_list:    # a pod's namespace always exists for selection, even if unseen yet
        nss.setdefault(p.namespace, NsInfo(p.namespace, {NAME_LABEL: p.namespace}))
    model = Model(pods={p.key: p for p in pod_list}, by_ip={p.ip: p for p in pod_list},
                  ingress={}, egress={})
    acc: dict[tuple[str, str], tuple[list[str], list[Allow]]] = {}
    for pol in sorted(policies, key=lambda o: (o["metadata"].get("namespace", ""),
                                               o["metadata"].get("name", ""))):
        meta, spec = pol.get("metadata") or {}, pol.get("spec") or {}
        ns = meta.get("namespace") or "default"
        key = f"{ns}/{meta.get('name', '')}"
        try:
            sel = _selector(spec.get("podSelector"), f"networkpolicy {key}: spec.podSelector")
            selected = [p for p in pod_list if p.namespace == ns and sel.matches(p.labels)]
            resolved = {d: _rules(pol, d, pod_list, nss) for d in _types(spec)} if selected \
                else {}
            staged = [(p, d, _allows(key, d, p, resolved[d])) for p in selected for d in resolved]
        except _PolicyError as exc:
            model.errors.append(f"{exc}; the policy is skipped (fix it with kubectl edit)")
            continue
        for p, direction, allows in staged:
            names, rules = acc.setdefault((direction, p.key), ([], []))
            names.append(key)
            rules.extend(allows)
    for (direction, pod_key), (names, rules) in acc.items():
        iso = Isolation(model.pods[pod_key], direction, tuple(names), tuple(rules))
        (model.ingress if direction == "ingress" else model.egress)[pod_key] = iso
    return model
