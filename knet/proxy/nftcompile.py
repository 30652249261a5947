"""kube-proxy's nftables mode as a pure compiler: knet's ServicePort table -> nft JSON commands.

The shape is upstream's (pkg/proxy/nftables): table `ip kube-proxy`; base chains hooked at
nat prerouting/output/postrouting and filter input/forward/output; a `services` chain that
looks the destination up in the `service-ips` and `service-nodeports` verdict maps; per
service port a `service-HASH-ns/name/proto/port` chain choosing an endpoint with
`numgen random mod N vmap`, per endpoint an `endpoint-HASH-...__ip/port` chain that DNATs;
ClientIP affinity as timed `affinity-HASH-...` sets (`update @set { ip saddr }`); masquerade
by mark (hairpin, traffic from outside the cluster CIDR, all NodePort traffic of
externalTrafficPolicy Cluster); `reject` for services without endpoints (logged to an NFLOG
group first, knet's one addition, so that flow records can say REFUSED).

Key design choice: every sync is ONE transaction that rewrites the rules and the verdict maps
(flush + add) but keeps the affinity sets of endpoints that stay, so a sync never forgets who
is stuck to which backend; stale service/endpoint chains and affinity sets are deleted in
the same transaction, after the rules and map elements that referenced them are flushed. The
first sync of a process deletes whatever table a previous proxy left (same batch).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from knet.proxy.config import ServicePort, ServiceTable

__all__ = ["FAMILY", "MASQ_MARK", "NFLOG_GROUP", "TABLE", "Compiled", "NftState", "compile_sync",
           "endpoint_chain", "service_chain"]

FAMILY, TABLE = "ip", "kube-proxy"
MASQ_MARK = 0x4000
NFLOG_GROUP = 19280   # the reject chain logs here first: flow records say REFUSED (knet's addition)
Cmd = dict[str, Any]
Expr = dict[str, Any]

# (name, type, hook, priority) of the base chains, as upstream hooks them
BASE_CHAINS = (
    ("filter-input", "filter", "input", -110),
    ("filter-forward", "filter", "forward", -110),
    ("filter-output", "filter", "output", -110),
    ("filter-output-post-dnat", "filter", "output", -90),
    ("nat-prerouting", "nat", "prerouting", -100),
    ("nat-output", "nat", "output", -100),
    ("nat-postrouting", "nat", "postrouting", 100),
)
PLAIN_CHAINS = ("services", "masquerading", "mark-for-masquerade", "service-endpoints-check",
                "nodeport-endpoints-check", "cluster-ips-check", "reject-chain")
MAPS = {  # name -> (key type, comment)
    "service-ips": (["ipv4_addr", "inet_proto", "inet_service"],
                    "ClusterIP, ExternalIP and LoadBalancer IP traffic"),
    "service-nodeports": (["inet_proto", "inet_service"], "NodePort traffic"),
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


def external_chain(sp: ServicePort) -> str:
    return "external-" + _hash(_base(sp))


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
        _rule("reject-chain", {"log": {"group": NFLOG_GROUP}}, {"reject": None}),
        _rule("cluster-ips-check", _match(_payload("ip", "daddr"), "@cluster-ips"),
              {"reject": None}, comment="Reject traffic to invalid ports of ClusterIPs"),
    ]


def _service_rules(sp: ServicePort, cluster_cidr: str, out: Compiled,
                   chains: dict[str, list[Cmd]]) -> None:
    proto = sp.protocol.lower()
    svc = service_chain(sp)
    rules = [_rule(svc, _match(_payload("ip", "daddr"), sp.cluster_ip),
                   _match(_payload(proto, "dport"), sp.port),
                   _match(_payload("ip", "saddr"), _prefix(cluster_cidr), "!="),
                   _jump("mark-for-masquerade"))]
    targets = []
    for ep in sp.endpoints:
        chain = endpoint_chain(sp, ep.ip, ep.port)
        targets.append(chain)
        out.endpoints[f"{sp.protocol}:{ep.ip}:{ep.port}:{sp.key}"] = (chain, sp.key)
        ep_rules = [_rule(chain, _match(_payload("ip", "saddr"), ep.ip),
                          _jump("mark-for-masquerade"))]
        if sp.affinity_seconds is not None:
            aff = affinity_set(sp, ep.ip, ep.port)
            out.state.affinity[aff] = int(sp.affinity_seconds)
            rules.append(_rule(svc, _match(_payload("ip", "saddr"), "@" + aff), _goto(chain)))
            ep_rules.append(_rule(chain, {"set": {"op": "update", "elem": _payload("ip", "saddr"),
                                                  "set": "@" + aff}}))
        ep_rules.append(_rule(chain, _match(_meta("l4proto"), proto),
                              {"dnat": {"addr": ep.ip, "port": ep.port}}))
        chains[chain] = ep_rules
    rules.append(_rule(svc, {"vmap": {"key": {"numgen": {"mode": "random", "mod": len(targets),
                                                         "offset": 0}},
                                      "data": {"set": [[i, _goto(t)]
                                                       for i, t in enumerate(targets)]}}}))
    chains[svc] = rules
    if sp.node_port:
        ext = external_chain(sp)
        chains[ext] = [_rule(ext, _jump("mark-for-masquerade")), _rule(ext, _goto(svc))]


def compile_sync(table: ServiceTable | Iterable[ServicePort], *, cluster_cidr: str,
                 previous: NftState | None) -> Compiled:
    """The one transaction of a sync. `previous` is None on a process's first sync (the
    table is then deleted and made anew in the same batch)."""
    ports = list(table.values()) if isinstance(table, Mapping) else list(table)
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
    service_ips, nodeports, no_ep, no_ep_np, cips = [], [], [], [], set()
    for sp in ports:
        proto = sp.protocol.lower()
        cips.add(sp.cluster_ip)
        if not sp.endpoints:
            no_ep.append([{"concat": [sp.cluster_ip, proto, sp.port]}, _goto("reject-chain")])
            if sp.node_port:
                no_ep_np.append([{"concat": [proto, sp.node_port]}, _goto("reject-chain")])
            continue
        _service_rules(sp, cluster_cidr, out, chains)
        service_ips.append([{"concat": [sp.cluster_ip, proto, sp.port]},
                            _goto(service_chain(sp))])
        if sp.node_port:
            nodeports.append([{"concat": [proto, sp.node_port]}, _goto(external_chain(sp))])
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
    cmds += _elements("cluster-ips", sorted(cips))
    cmds += _elements("service-ips", service_ips)
    cmds += _elements("service-nodeports", nodeports)
    cmds += _elements("no-endpoint-services", no_ep)
    cmds += _elements("no-endpoint-nodeports", no_ep_np)
    for name in sorted(previous.chains - set(chains)):
        cmds.append({"delete": _obj("chain", name=name)})
    for name in sorted(set(previous.affinity) - set(out.state.affinity)):
        cmds.append({"delete": _obj("set", name=name)})
    out.state.chains = set(chains)
    return out
