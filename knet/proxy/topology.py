"""Which endpoints one node's proxy uses for a service port: kube-proxy's
`CategorizeEndpoints` (pkg/proxy/topology.go), pure.

Candidates come from EndpointSlices with their conditions (ready, serving, terminating; a
missing `ready` means true, a missing `serving` means `ready`) and nodeName. Traffic from
inside the cluster (ClusterIP) uses the *cluster* set unless `internalTrafficPolicy: Local`;
traffic from outside (NodePort, LoadBalancer) unless `externalTrafficPolicy: Local`. The
cluster set is the ready endpoints, or if none the serving-and-terminating ones (KEP-1669);
the local set is the same restricted to this node. `trafficDistribution: PreferClose` (and
PreferSameZone/PreferSameNode) narrows the cluster set to this node's endpoints when it has
any (knet's nodes are each their own zone). `Selection.verdict` says what the proxy does
with a set that is empty: REJECT when the Service has no usable endpoint anywhere, DROP
when it has some but none for this traffic (kube-proxy's iptables/nftables rules exactly).
"""

from __future__ import annotations

from dataclasses import dataclass

from knet.proxy.balancer import Endpoint

__all__ = ["DROP", "PREFER_CLOSE", "REJECT", "SERVE", "Candidate", "Selection", "select"]

SERVE, REJECT, DROP = "serve", "reject", "drop"
PREFER_CLOSE = frozenset({"PreferClose", "PreferSameZone", "PreferSameNode"})


@dataclass(frozen=True, slots=True)
class Candidate:
    endpoint: Endpoint
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node: str = ""

    @classmethod
    def from_conditions(cls, endpoint: Endpoint, conditions: dict[str, object],
                        node: str) -> Candidate:
        ready = conditions.get("ready") is not False
        serving = conditions.get("serving")
        return cls(endpoint, ready=ready,
                   serving=ready if serving is None else bool(serving),
                   terminating=bool(conditions.get("terminating")), node=node)


@dataclass(frozen=True, slots=True)
class Selection:
    """The endpoints of one kind of traffic and what to do when there are none."""
    endpoints: tuple[Endpoint, ...]
    verdict: str  # SERVE | REJECT | DROP
    why: str = ""  # "terminating fallback", "local only", "prefer close", ...


def _usable(cands: list[Candidate]) -> tuple[list[Candidate], str]:
    ready = [c for c in cands if c.ready]
    if ready:
        return ready, ""
    fallback = [c for c in cands if c.serving and c.terminating]
    return fallback, ("terminating fallback" if fallback else "")


def _sorted(cands: list[Candidate]) -> tuple[Endpoint, ...]:
    return tuple(sorted({c.endpoint for c in cands}, key=Endpoint.sort_key))


def select(cands: list[Candidate], *, node: str, local: bool,
           distribution: str = "") -> Selection:
    """The endpoints this node uses for one kind of traffic (`local`: its traffic policy is
    Local) and the verdict when there are none."""
    anywhere, why = _usable(cands)
    if local:
        mine, why = _usable([c for c in cands if c.node == node])
        why = ", ".join(w for w in ("local only", why) if w)
        if mine:
            return Selection(_sorted(mine), SERVE, why)
        return Selection((), DROP if anywhere else REJECT,
                         f"no local endpoints on {node}" if anywhere else "no endpoints")
    if not anywhere:
        return Selection((), REJECT, "no endpoints")
    if distribution in PREFER_CLOSE and not why:
        close = [c for c in anywhere if c.node == node]
        if close:
            return Selection(_sorted(close), SERVE, "prefer close")
    return Selection(_sorted(anywhere), SERVE, why)
