"""`decide`: may FROM reach TO on PORT/PROTO, and why — read from the same `Model` the
kernel rules are rendered from (knet/policy/model.py), so the answer is the enforcement.

A connection must pass two gates: FROM's egress (if FROM is an isolated pod) and TO's
ingress (if TO is an isolated pod). Each gate says whether it is open, which policies
isolate the pod and which rules let this connection through. Addresses that are not pods
(a node, something outside) are allowed to leave; their traffic meets only TO's ingress.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from knet.policy.model import Allow, Isolation, Model, PodInfo, PortMatch

__all__ = ["Decision", "Gate", "decide", "rule_matches"]


@dataclass(frozen=True)
class Gate:
    direction: str                  # "egress" | "ingress"
    pod: str                        # the pod whose gate it is ("" when not a pod)
    isolated: bool
    allowed: bool
    policies: tuple[str, ...] = ()  # the policies isolating the pod
    allowed_by: tuple[str, ...] = ()   # "ns/name rule i" for each rule that matches

    def explain(self) -> str:
        who = self.pod or "(not a pod)"
        if not self.pod:
            return f"{self.direction}: {who}: no policy applies: allowed"
        if not self.isolated:
            return (f"{self.direction}: {who} is selected by no policy with policyType "
                    f"{self.direction.capitalize()}: allowed")
        by = ", ".join(self.policies)
        if self.allowed:
            return f"{self.direction}: {who} isolated by {by}; allowed by {', '.join(self.allowed_by)}"
        return (f"{self.direction}: {who} isolated by {by}; no rule matches: "
                f"DROPPED (default deny)")


@dataclass(frozen=True)
class Decision:
    src: str
    dst: str
    port: int
    protocol: str
    egress: Gate
    ingress: Gate
    notes: list[str] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        return self.egress.allowed and self.ingress.allowed

    def lines(self) -> list[str]:
        verdict = "ALLOWED" if self.allowed else "DROPPED"
        return [f"{self.src} -> {self.dst} {self.port}/{self.protocol}: {verdict}",
                "  " + self.egress.explain(), "  " + self.ingress.explain(),
                *("  note: " + n for n in self.notes)]


def _port_ok(pm: PortMatch, port: int, protocol: str, dst: PodInfo | None) -> bool:
    if pm.protocol != protocol:
        return False
    if pm.named:
        return dst is not None and dst.named_port(pm.named, protocol) == port
    return pm.first is None or (pm.first <= port <= (pm.last or pm.first))


def rule_matches(rule: Allow, peer_ip: str, port: int, protocol: str,
                 dst: PodInfo | None) -> bool:
    """Does this allow-rule let `peer_ip` through on port/protocol to `dst`?"""
    peer_ok = rule.peers is None or any(p.contains(peer_ip) for p in rule.peers)
    port_ok = rule.ports is None or any(_port_ok(pm, port, protocol, dst) for pm in rule.ports)
    return peer_ok and port_ok


def _gate(direction: str, iso: Isolation | None, pod: PodInfo | None, peer_ip: str, port: int,
          protocol: str, dst: PodInfo | None) -> Gate:
    if pod is None:
        return Gate(direction, "", False, True)
    if iso is None:
        return Gate(direction, pod.key, False, True)
    by = tuple(r.label for r in iso.allows if rule_matches(r, peer_ip, port, protocol, dst))
    return Gate(direction, pod.key, True, bool(by), iso.policies, by)


def decide(model: Model, src_ip: str, dst_ip: str, port: int, protocol: str = "tcp") -> Decision:
    protocol = protocol.lower()
    src, dst = model.by_ip.get(src_ip), model.by_ip.get(dst_ip)
    egress = _gate("egress", model.egress.get(src.key) if src else None, src, dst_ip, port,
                   protocol, dst)
    ingress = _gate("ingress", model.ingress.get(dst.key) if dst else None, dst, src_ip, port,
                    protocol, dst)
    notes = []
    if src is not None and dst is not None and src.node == dst.node:
        notes.append(f"same node ({src.node}): both gates are checked there")
    return Decision(src.key if src else src_ip, dst.key if dst else dst_ip, port, protocol,
                    egress, ingress, notes)
