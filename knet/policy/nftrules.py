"""One node's NetworkPolicy table, as libnftables JSON commands: pure, from the `Model`.

The table (`inet knet_netpol`, the only one this code touches) is rebuilt whole in one
transaction (`add; delete; add` of the table, then its chains and rules), so a change is
atomic and nothing stale survives. Its shape, in nft's words:

    chain forward { type filter hook forward priority 0; policy accept;   # pod <-> pod, bridged
        ct state established,related accept                           #   (br_netfilter) or routed
        jump policy }
    chain output  { type filter hook output priority 0; policy accept;    # dials made in the node
        ct state established,related accept                           #   netns: the proxy's, with
        fib saddr type local accept    # the node's own traffic (probes) #   the client's IP kept
        jump policy }
    chain policy  { ip saddr vmap { POD_IP : jump egress_NS_NAME, … }  # local pods isolated for
                    ip daddr vmap { POD_IP : jump ingress_NS_NAME, … } } #   egress / ingress
    chain ingress_NS_NAME { ip saddr { PEERS } tcp dport { PORTS } return   # one per (rule, peer
                            …                                              #   kind, protocol)
                            log group 2110 prefix "knetpol ingress POD_IP " drop }

Drops are logged to NFLOG group `LOG_GROUP` with the direction and the pod's IP in the
prefix; the enforcer reads them (knet/dataplane/nflog.py) and names the policies.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections import defaultdict
from typing import Any

from knet.policy.model import Allow, Isolation, Model, Peer, PortMatch

__all__ = ["FAMILY", "LOG_GROUP", "LOG_PREFIX", "TABLE", "chain_name", "render"]

FAMILY, TABLE = "inet", "knet_netpol"
LOG_GROUP = 2110
LOG_PREFIX = "knetpol"
Expr = dict[str, Any]
Command = dict[str, Any]


def chain_name(direction: str, pod_key: str) -> str:
    # namespaces are DNS labels (no "_"), so "ingress_NS_NAME" is unambiguous
    name = f"{direction}_{pod_key.replace('/', '_', 1)}"
    if len(name) > 200:
        name = name[:180] + "_" + hashlib.sha256(name.encode()).hexdigest()[:12]
    return name


def _field(ip: str, which: str) -> Expr:
    proto = "ip6" if ":" in ip else "ip"
    return {"payload": {"protocol": proto, "field": which}}


def _addr(value: str) -> Any:
    if "/" not in value:
        return value
    net = ipaddress.ip_network(value, strict=False)
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def _match(left: Expr, right: Any, op: str = "==") -> Expr:
    return {"match": {"op": op, "left": left, "right": right}}


def _addr_match(values: list[str], which: str, op: str = "==") -> Expr:
    items = [_addr(v) for v in sorted(values)]
    return _match(_field(values[0], which), items[0] if len(items) == 1 else {"set": items}, op)


def _peer_exprs(peers: tuple[Peer, ...] | None, which: str) -> list[list[Expr]]:
    """One expression list per group of peers (None: any peer = one empty list)."""
    if peers is None:
        return [[]]
    out: list[list[Expr]] = []
    by_family: dict[bool, list[str]] = defaultdict(list)
    for p in peers:
        if p.cidr:
            if not p.excepts:
                by_family[":" in p.cidr].append(p.cidr)
                continue
            out.append([_addr_match([p.cidr], which), _addr_match(list(p.excepts), which, "!=")])
        else:
            for ip in p.ips:
                by_family[":" in ip].append(ip)
    for values in by_family.values():
        out.insert(0, [_addr_match(sorted(set(values)), which)])
    return out


def _port_exprs(ports: tuple[PortMatch, ...] | None) -> list[list[Expr]]:
    """One expression list per protocol (None: any port = one empty list)."""
    if ports is None:
        return [[]]
    any_port: set[str] = set()
    ranges: dict[str, set[tuple[int, int]]] = defaultdict(set)
    for pm in ports:
        if pm.first is None:
            any_port.add(pm.protocol)
        else:
            ranges[pm.protocol].add((pm.first, pm.last or pm.first))
    out = [[_match({"meta": {"key": "l4proto"}}, proto)] for proto in sorted(any_port)]
    for proto, spans in sorted(ranges.items()):
        if proto in any_port:
            continue
        items = [a if a == b else {"range": [a, b]} for a, b in sorted(spans)]
        out.append([_match({"payload": {"protocol": proto, "field": "dport"}},
                           items[0] if len(items) == 1 else {"set": items})])
    return out


def _named_egress(rule: Allow, model: Model) -> list[list[Expr]]:
    """Egress named ports: for each destination pod the rule's peers admit that has the
    named port, `ip daddr {PODS} PROTO dport NUMBER` (grouped by number)."""
    out = []
    for pm in rule.ports or ():
        if not pm.named:
            continue
        groups: dict[int, list[str]] = defaultdict(list)
        for pod in model.pods.values():
            number = pod.named_port(pm.named, pm.protocol)
            if number is not None and (rule.peers is None or any(p.contains(pod.ip)
                                                                  for p in rule.peers)):
                groups[number].append(pod.ip)
        for number, ips in sorted(groups.items()):
            out.append([_addr_match(ips, "daddr"),
                        _match({"payload": {"protocol": pm.protocol, "field": "dport"}}, number)])
    return out


def _allow_rules(rule: Allow, direction: str, model: Model) -> list[list[Expr]]:
    if rule.allows_nothing():
        return []
    which = "saddr" if direction == "ingress" else "daddr"
    peers = _peer_exprs(rule.peers, which)
    if rule.peers is not None and not any(p.cidr or p.ips for p in rule.peers):
        return []                                 # the selectors match no pod (yet)
    plain = None if rule.ports is None else tuple(p for p in rule.ports if not p.named)
    out = []
    if plain is None or plain:
        out += [pe + po for pe in peers for po in _port_exprs(plain)]
    if direction == "egress":
        out += _named_egress(rule, model)
    return out


def _pod_chain(iso: Isolation, model: Model) -> list[list[Expr]]:
    rules = []
    for allow in iso.allows:
        rules += [exprs + [{"counter": None}, {"return": None}]
                  for exprs in _allow_rules(allow, iso.direction, model)]
    prefix = f"{LOG_PREFIX} {iso.direction} {iso.pod.ip} "
    rules.append([{"counter": None}, {"log": {"prefix": prefix, "group": LOG_GROUP}},
                  {"drop": None}])
    return rules


def _vmap(isos: list[Isolation], which: str) -> list[Expr]:
    items = [[iso.pod.ip, {"jump": {"target": chain_name(iso.direction, iso.pod.key)}}]
             for iso in sorted(isos, key=lambda i: i.pod.ip)]
    return [{"vmap": {"key": _field(isos[0].pod.ip, which), "data": {"set": items}}}]


def render(model: Model, node: str) -> list[Command]:
    """The whole table for `node` (its pods with an IP), as one batch of commands."""
    tbl = {"family": FAMILY, "table": TABLE}
    cmds: list[Command] = [{"add": {"table": {"family": FAMILY, "name": TABLE}}},
                           {"delete": {"table": {"family": FAMILY, "name": TABLE}}},
                           {"add": {"table": {"family": FAMILY, "name": TABLE}}}]
    rules: list[Command] = []

    def chain(name: str, exprs_list: list[list[Expr]], **base: Any) -> None:
        cmds.append({"add": {"chain": {**tbl, "name": name, **base}}})
        rules.extend({"add": {"rule": {**tbl, "chain": name, "expr": e}}} for e in exprs_list)

    established = [_match({"ct": {"key": "state"}}, ["established", "related"], "in"),
                   {"accept": None}]
    chain("forward", [established, [{"jump": {"target": "policy"}}]],
          type="filter", hook="forward", prio=0, policy="accept")
    own = [_match({"fib": {"result": "type", "flags": ["saddr"]}}, "local"), {"accept": None}]
    chain("output", [established, own, [{"jump": {"target": "policy"}}]],
          type="filter", hook="output", prio=0, policy="accept")
    local = {"egress": [i for i in model.egress.values() if i.pod.node == node],
             "ingress": [i for i in model.ingress.values() if i.pod.node == node]}
    dispatch = []
    for direction, which in (("egress", "saddr"), ("ingress", "daddr")):
        for fam in (False, True):
            isos = [i for i in local[direction] if (":" in i.pod.ip) == fam]
            if isos:
                dispatch.append(_vmap(isos, which))
    chain("policy", dispatch)
    for direction in ("egress", "ingress"):
        for iso in sorted(local[direction], key=lambda i: i.pod.key):
            chain(chain_name(direction, iso.pod.key), _pod_chain(iso, model))
    return cmds + rules
