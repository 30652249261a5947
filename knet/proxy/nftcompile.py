"""kube-proxy's nftables mode as a pure compiler: knet's ServicePort table -> nft JSON commands.

The shape is upstream's (pkg/proxy/nftables): table `ip kube-proxy`; base chains hooked at
nat prerouting/output/postrouting and filter input/forward/output; a `services` chain that
looks the destination up in the `service-ips` and `service-nodeports` verdict maps; per
service port a `service-HASH-ns/name/proto/port` chain choosing an endpoint with
`numgen random mod N vmap`, per endpoint an `endpoint-HASH-...__ip/port` chain that DNATs;
ClientIP affinity as timed `affinity-HASH-...` sets (`update @set { ip saddr }`); masquerade
by mark (hairpin, traffic from outside the cluster CIDR, all NodePort traffic of
externalTrafficPolicy Cluster); `reject` for services without endpoints, `drop` for a Local
traffic policy without endpoints on this node (both logged to an NFLOG group first, knet's one
addition, so that flow records can say REFUSED or DROPPED). Traffic policies as upstream: a
`local-HASH-...` chain over this node's endpoints; NodePort, LoadBalancer and externalIP
traffic enters an `external-HASH-...` chain (masquerade for Cluster; for Local the client
address is kept and pod traffic short-circuits to the cluster endpoints);
loadBalancerSourceRanges are `firewall-ips` entries checked before DNAT. Which endpoints each
set holds is topology.py's (the userspace mode's very choice).

Key design choice: every sync is ONE transaction that rewrites the rules and the verdict maps
(flush + add) but keeps the affinity sets of endpoints that stay, so a sync never forgets who
is stuck to which backend; stale service/endpoint chains and affinity sets are deleted in
the same transaction, after the rules and map elements that referenced them are flushed. The
first sync of a process deletes whatever table a previous proxy left (same batch).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from knet.proxy.balancer import Endpoint
from knet.proxy.config import ServicePort, ServiceTable
from knet.proxy.external import External
from knet.proxy.topology import DROP

log = logging.getLogger(__name__)

__all__ = ["DROP_PREFIX", "FAMILY", "MASQ_MARK", "NFLOG_GROUP", "TABLE", "Compiled", "NftState", "compile_sync",
           "endpoint_chain", "external_chain", "firewall_chain", "local_chain", "service_chain"]

FAMILY, TABLE = "ip", "kube-proxy"
MASQ_MARK = 0x4000
NFLOG_GROUP = 19280   # the reject chain logs here first: flow records say REFUSED (knet's addition)
DROP_PREFIX = "knet-drop"   # and the drop chain (a Local policy without local endpoints): DROPPED
Cmd = dict[str, Any]
Expr = dict[str, Any]

# (name, type, hook, priority) of the base chains, as upstream hooks them
BASE_CHAINS = (
    ("filter-prerouting", "filter", "prerouting", -110),
    ("filter-input", "filter", "input", -110),
    ("filter-forward", "filter", "forward", -110),
    ("filter-output", "filter", "output", -110),
    ("filter-output-post-dnat", "filter", "output", -90),
    ("nat-prerouting", "nat", "prerouting", -100),
    ("nat-output", "nat", "output", -100),
    ("nat-postrouting", "nat", "postrouting", 100),
)
PLAIN_CHAINS = ("services", "masquerading", "mark-for-masquerade", "service-endpoints-check",
                "nodeport-endpoints-check", "cluster-ips-check", "reject-chain", "firewall-check", "drop-chain")
MAPS = {  # name -> (key type, comment)
    "service-ips": (["ipv4_addr", "inet_proto", "inet_service"],
                    "ClusterIP, ExternalIP and LoadBalancer IP traffic"),
    "service-nodeports": (["inet_proto", "inet_service"], "NodePort traffic"),
    "firewall-ips": (["ipv4_addr", "inet_proto", "inet_service"],
                     "destinations that are subject to LoadBalancerSourceRanges"),
    "no-endpoint-services": (["ipv4_addr", "inet_proto", "inet_service"],
                             "vmap to reject packets to services with no endpoints"),
    "no-endpoint-nodeports": (["inet_proto", "inet_service"],
                              "vmap to reject packets to service nodeports with no endpoints"),
}


def _hash(name: str) -> str:
    digest = hashlib.sha256(name.encode()).digest()
    out = base64.b32encode(digest).decode()[:8] + "-" + name
    return out if len(out) <= 240 else out[:237] + "..."


def _base(sp: ServicePort) -> str:
    return f"{sp.namespace}/{sp.name}/{sp.protocol.lower()}/{sp.port_name}"


def service_chain(sp: ServicePort) -> str:
    """`service-HASH-ns/name/tcp/portname`, upstream's cluster-policy chain name."""
    return "service-" + _hash(_base(sp))


def local_chain(sp: ServicePort) -> str:
    """`local-HASH-...`: the policy chain over this node's endpoints (a Local policy)."""
    return "local-" + _hash(_base(sp))


def external_chain(sp: ServicePort) -> str:
    return "external-" + _hash(_base(sp))


def firewall_chain(sp: ServicePort) -> str:
    return "firewall-" + _hash(_base(sp))


def endpoint_chain(sp: ServicePort, ip: str, port: int) -> str:
    """`endpoint-HASH-ns/name/tcp/portname__ip/port`."""
    return "endpoint-" + _hash(f"{_base(sp)}__{ip}/{port}")


def affinity_set(sp: ServicePort, ip: str, port: int) -> str:
    return "affinity-" + _hash(f"{_base(sp)}__{ip}/{port}")


# --- expressions -----------------------------------------------------------------------------
def _payload(proto: str, fld: str) -> Expr:
    return {"payload": {"protocol": proto, "field": fld}}


def _meta(key: str) -> Expr:
    return {"meta": {"key": key}}


def _match(left: Any, right: Any, op: str = "==") -> Expr:
    return {"match": {"op": op, "left": left, "right": right}}


def _prefix(cidr: str) -> Expr:
    addr, _, length = cidr.partition("/")
    return {"prefix": {"addr": addr, "len": int(length or 32)}}


def _jump(target: str) -> Expr:
    return {"jump": {"target": target}}


def _goto(target: str) -> Expr:
    return {"goto": {"target": target}}


_DST3 = {"concat": [_payload("ip", "daddr"), _meta("l4proto"), _payload("th", "dport")]}
_DST2 = {"concat": [_meta("l4proto"), _payload("th", "dport")]}
_CT_NEW = _match({"ct": {"key": "state"}}, "new", "in")
_LOCAL = [_match({"fib": {"result": "type", "flags": ["daddr"]}}, "local"),
          _match(_payload("ip", "daddr"), _prefix("127.0.0.0/8"), "!=")]


# --- the compiled result -----------------------------------------------------------------------
@dataclass
class NftState:
    """What the last sync left in the kernel: the service/endpoint chains and affinity sets."""
    chains: set[str] = field(default_factory=set)
    affinity: dict[str, int] = field(default_factory=dict)   # set name -> timeout seconds


@dataclass
class Compiled:
    commands: list[Cmd]
    state: NftState
    endpoints: dict[str, tuple[str, str]] = field(default_factory=dict)  # "ip:port" -> chain, svc key


def _obj(kind: str, **body: Any) -> Cmd:
    return {kind: {"family": FAMILY, "table": TABLE, **body}}


def _rule(chain: str, *expr: Expr, comment: str = "") -> Cmd:
    body: dict[str, Any] = {"family": FAMILY, "table": TABLE, "chain": chain,
                            "expr": list(expr)}
    if comment:
        body["comment"] = comment
    return {"add": {"rule": body}}


def _elements(name: str, elems: list[Any]) -> list[Cmd]:
    return [{"add": _obj("element", name=name, elem=elems)}] if elems else []


def _skeleton(cluster_cidr: str) -> list[Cmd]:
    """The fixed chains' rules (their chains flushed and re-added by the caller)."""
    masq_bit = {"&": [_meta("mark"), MASQ_MARK]}
    return [
        _rule("filter-input", _CT_NEW, _jump("nodeport-endpoints-check")),
        _rule("filter-input", _CT_NEW, _jump("service-endpoints-check")),
        _rule("filter-forward", _CT_NEW, _jump("service-endpoints-check")),
        _rule("filter-forward", _CT_NEW, _jump("cluster-ips-check")),
        _rule("filter-output", _CT_NEW, _jump("service-endpoints-check")),
        _rule("filter-prerouting", _CT_NEW, _jump("firewall-check")),
        _rule("filter-output", _CT_NEW, _jump("firewall-check")),
        _rule("filter-output-post-dnat", _CT_NEW, _jump("cluster-ips-check")),
        _rule("nat-prerouting", _jump("services")),
        _rule("nat-output", _jump("services")),
        _rule("nat-postrouting", _jump("masquerading")),
        _rule("mark-for-masquerade",
              {"mangle": {"key": _meta("mark"), "value": {"|": [_meta("mark"), MASQ_MARK]}}}),
        _rule("masquerading", _match(masq_bit, 0), {"return": None}),
        _rule("masquerading",
              {"mangle": {"key": _meta("mark"), "value": {"^": [_meta("mark"), MASQ_MARK]}}}),
        _rule("masquerading", {"masquerade": {"flags": ["fully-random"]}}),
        _rule("services", {"vmap": {"key": _DST3, "data": "@service-ips"}}),
        _rule("services", *_LOCAL, {"vmap": {"key": _DST2, "data": "@service-nodeports"}}),
        _rule("service-endpoints-check", {"vmap": {"key": _DST3,
                                                   "data": "@no-endpoint-services"}}),
        _rule("nodeport-endpoints-check", *_LOCAL,
              {"vmap": {"key": _DST2, "data": "@no-endpoint-nodeports"}}),
        _rule("firewall-check", {"vmap": {"key": _DST3, "data": "@firewall-ips"}}),
        _rule("drop-chain", {"log": {"group": NFLOG_GROUP, "prefix": DROP_PREFIX}}, {"drop": None}),
        _rule("reject-chain", {"log": {"group": NFLOG_GROUP}}, {"reject": None}),
        _rule("cluster-ips-check", _match(_payload("ip", "daddr"), "@cluster-ips"),
              {"reject": None}, comment="Reject traffic to invalid ports of ClusterIPs"),
    ]


def _policy_chain(sp: ServicePort, name: str, eps: tuple[Endpoint, ...], cluster_cidr: str,
                  out: Compiled, chains: dict[str, list[Cmd]], *, internal: bool) -> None:
    """One policy chain (`service-...` over the cluster endpoints, `local-...` over this
    node's): affinity checks, then `numgen random` over its endpoints' chains. The internal
    one first masquerades traffic to the ClusterIP from outside the cluster CIDR."""
    proto = sp.protocol.lower()
    rules = [_rule(name, _match(_payload("ip", "daddr"), sp.cluster_ip),
                   _match(_payload(proto, "dport"), sp.port),
                   _match(_payload("ip", "saddr"), _prefix(cluster_cidr), "!="),
                   _jump("mark-for-masquerade"))] if internal else []
    targets = []
    for ep in eps:
        chain = endpoint_chain(sp, ep.ip, ep.port)
        targets.append(chain)
        out.endpoints[f"{sp.protocol}:{ep.ip}:{ep.port}:{sp.key}"] = (chain, sp.key)
        aff = affinity_set(sp, ep.ip, ep.port) if sp.affinity_seconds is not None else ""
        if aff:
            rules.append(_rule(name, _match(_payload("ip", "saddr"), "@" + aff), _goto(chain)))
        if chain in chains:
            continue
        ep_rules = [_rule(chain, _match(_payload("ip", "saddr"), ep.ip),
                          _jump("mark-for-masquerade"))]
        if aff and sp.affinity_seconds is not None:
            out.state.affinity[aff] = int(sp.affinity_seconds)
            ep_rules.append(_rule(chain, {"set": {"op": "update", "elem": _payload("ip", "saddr"),
                                                  "set": "@" + aff}}))
        ep_rules.append(_rule(chain, _match(_meta("l4proto"), proto),
                              {"dnat": {"addr": ep.ip, "port": ep.port}}))
        chains[chain] = ep_rules
    rules.append(_rule(name, {"vmap": {"key": {"numgen": {"mode": "random", "mod": len(targets),
                                                          "offset": 0}},
                                       "data": {"set": [[i, _goto(t)]
                                                        for i, t in enumerate(targets)]}}}))
    chains[name] = rules


def _external_rules(sp: ServicePort, chain: str, cluster: str | None, policy: str | None,
                    cluster_cidr: str) -> list[Cmd]:
    """The `external-...` chain of NodePort, LoadBalancer and externalIP traffic. Cluster
    policy: masquerade, then the cluster endpoints. Local policy (upstream's rules): traffic
    from pods is short-circuited to the cluster endpoints unmasqueraded (as if it went out to
    a load balancer and came back), traffic from the node itself is masqueraded, and
    everything else keeps its client address and goes to this node's endpoints only."""
    if not sp.external_local:
        rules = [_rule(chain, _jump("mark-for-masquerade"))]
    else:
        local_src = _match({"fib": {"result": "type", "flags": ["saddr"]}}, "local")
        rules = []
        if cluster is not None:
            rules.append(_rule(chain, _match(_payload("ip", "saddr"), _prefix(cluster_cidr)),
                               _goto(cluster), comment="short-circuit pod traffic"))
        rules.append(_rule(chain, local_src, _jump("mark-for-masquerade"),
                           comment="masquerade local traffic"))
        if cluster is not None:
            rules.append(_rule(chain, local_src, _goto(cluster),
                               comment="short-circuit local traffic"))
    if policy is not None:
        rules.append(_rule(chain, _goto(policy)))
    return rules


def _firewall_rules(chain: str, ext: External, node_ips: Iterable[str]) -> list[Cmd]:
    """`loadBalancerSourceRanges`: drop sources outside the ranges; the node may reach its
    own LoadBalancer address when a range holds a node IP (it then arrives from the VIP)."""
    nets = [ipaddress.IPv4Network(r, strict=False) for r in ext.source_ranges]
    sources: list[Any] = [_prefix(str(n)) for n in nets]
    if any(ipaddress.IPv4Address(ip) in n for ip in node_ips for n in nets):
        sources += list(ext.lb_ips)
    return [_rule(chain, _match(_payload("ip", "saddr"), {"set": sources}, "!="), {"drop": None})]


@dataclass
class _Elements:
    """Map elements of one sync, first writer wins per key (a second Service asking for a
    taken address:port is logged and left out: one bad Service never fails the batch)."""
    maps: dict[str, dict[str, list[Any]]] = field(default_factory=lambda: {
        name: {} for name in (*MAPS, "cluster-ips")})

    def add(self, name: str, key: Any, verdict: Expr | None, owner: str) -> None:
        index = json.dumps(key)
        have = self.maps[name]
        if index in have:
            if have[index][-1] != owner and name != "cluster-ips":   # ports share their IP
                log.error("%s: %s %s is already %s's; not programmed for this one", owner,
                          name, key, have[index][-1])
            return
        have[index] = [key, verdict, owner]

    def commands(self) -> list[Cmd]:
        out = []
        for name, have in self.maps.items():
            elems = [k if v is None else [k, v] for k, v, _ in have.values()]
            out += _elements(name, sorted(elems, key=json.dumps))
        return out


def _service_port(sp: ServicePort, ext: External | None, node_ips: tuple[str, ...],
                  cluster_cidr: str, out: Compiled, chains: dict[str, list[Cmd]],
                  maps: _Elements) -> None:
    """Every chain and map element of one service port (upstream's syncProxyRules loop)."""
    proto, es = sp.protocol.lower(), sp.external_side()

    def key3(ip: str, port: int) -> Expr:
        return {"concat": [ip, proto, port]}
    has_any = bool(sp.endpoints or es.endpoints) or DROP in (sp.verdict, es.verdict)
    no_ep = _goto("reject-chain" if not has_any else "drop-chain")
    internal = local_chain(sp) if sp.internal_local else service_chain(sp)
    policy = internal if sp.external is None else \
        local_chain(sp) if sp.external_local else service_chain(sp)
    if sp.endpoints:
        _policy_chain(sp, internal, sp.endpoints, cluster_cidr, out, chains, internal=True)
        maps.add("service-ips", key3(sp.cluster_ip, sp.port), _goto(internal), sp.key)
    else:
        maps.add("no-endpoint-services", key3(sp.cluster_ip, sp.port), no_ep, sp.key)
    if es.endpoints and policy != internal:
        _policy_chain(sp, policy, es.endpoints, cluster_cidr, out, chains, internal=False)
    lb_ips = ext.lb_ips if ext is not None else ()
    frontends = [*(ext.external_ips if ext is not None else ()), *lb_ips]
    if not (sp.node_port or frontends) or not has_any:
        for ip in frontends:
            maps.add("no-endpoint-services", key3(ip, sp.port), no_ep, sp.key)
        if sp.node_port:
            maps.add("no-endpoint-nodeports", {"concat": [proto, sp.node_port]}, no_ep, sp.key)
        return
    chain = external_chain(sp)
    cluster = internal if sp.endpoints and not sp.internal_local else None
    chains[chain] = _external_rules(sp, chain, cluster, policy if es.endpoints else None,
                                    cluster_cidr)
    for ip in frontends:
        maps.add("service-ips", key3(ip, sp.port), _goto(chain), sp.key)
        if not es.endpoints:
            maps.add("no-endpoint-services", key3(ip, sp.port), no_ep, sp.key)
    if sp.node_port:
        maps.add("service-nodeports", {"concat": [proto, sp.node_port]}, _goto(chain), sp.key)
        if not es.endpoints:
            maps.add("no-endpoint-nodeports", {"concat": [proto, sp.node_port]}, no_ep, sp.key)
    if ext is not None and ext.source_ranges and lb_ips:
        fw = firewall_chain(sp)
        chains[fw] = _firewall_rules(fw, ext, node_ips)
        for ip in lb_ips:
            maps.add("firewall-ips", key3(ip, sp.port), _goto(fw), sp.key)


def compile_sync(table: ServiceTable | Iterable[ServicePort], *, cluster_cidr: str,
                 previous: NftState | None, externals: Mapping[str, External] | None = None,
                 node_ips: Iterable[str] = ()) -> Compiled:
    """The one transaction of a sync. `previous` is None on a process's first sync (the
    table is then deleted and made anew in the same batch). `externals`: each Service's
    LoadBalancer addresses, externalIPs and source ranges, by "namespace/name"."""
    ports = list(table.values()) if isinstance(table, Mapping) else list(table)
    externals = externals or {}
    out = Compiled([], NftState())
    cmds = out.commands
    tbl = {"family": FAMILY, "name": TABLE}
    cmds.append({"add": {"table": {**tbl, "comment": "rules for kube-proxy"}}})
    if previous is None:
        cmds += [{"delete": {"table": tbl}}, {"add": {"table": {**tbl,
                                                              "comment": "rules for kube-proxy"}}}]
        previous = NftState()
    for name, ctype, hook, prio in BASE_CHAINS:
        cmds.append({"add": _obj("chain", name=name, type=ctype, hook=hook, prio=prio,
                                 policy="accept")})
    for name in PLAIN_CHAINS:
        cmds.append({"add": _obj("chain", name=name)})
    cmds.append({"add": _obj("set", name="cluster-ips", type="ipv4_addr",
                             comment="Active ClusterIPs")})
    for name, (key, comment) in MAPS.items():
        cmds.append({"add": _obj("map", name=name, type=key, map="verdict", comment=comment)})
    # flush what is rewritten: fixed chains, maps, and every service chain of the last sync
    for name, *_ in BASE_CHAINS:
        cmds.append({"flush": _obj("chain", name=name)})
    for name in PLAIN_CHAINS:
        cmds.append({"flush": _obj("chain", name=name)})
    cmds.append({"flush": _obj("set", name="cluster-ips")})
    for name in MAPS:
        cmds.append({"flush": _obj("map", name=name)})
    for name in sorted(previous.chains):
        cmds.append({"flush": _obj("chain", name=name)})
    cmds += _skeleton(cluster_cidr)

    chains: dict[str, list[Cmd]] = {}
    maps = _Elements()
    node_ips = tuple(node_ips)
    for sp in ports:
        maps.add("cluster-ips", sp.cluster_ip, None, sp.key)
        _service_port(sp, externals.get(sp.service), node_ips, cluster_cidr, out, chains, maps)
    # affinity sets: kept when unchanged, made when new (before the rules that use them)
    for name, timeout in sorted(out.state.affinity.items()):
        if previous.affinity.get(name) not in (None, timeout):
            cmds.append({"delete": _obj("set", name=name)})
        if previous.affinity.get(name) != timeout:
            cmds.append({"add": _obj("set", name=name, type="ipv4_addr",
                                     flags=["timeout"], timeout=timeout)})
    for name in sorted(chains):
        cmds.append({"add": _obj("chain", name=name)})
    for name in sorted(chains):
        cmds += chains[name]
    cmds += maps.commands()
    for name in sorted(previous.chains - set(chains)):
        cmds.append({"delete": _obj("chain", name=name)})
    for name in sorted(set(previous.affinity) - set(out.state.affinity)):
        cmds.append({"delete": _obj("set", name=name)})
    out.state.chains = set(chains)
    return out
