"""The LoadBalancer address pool and the choice of the announcing node: pure, no API calls.

`AddressPool` hands out the pool's addresses (network and broadcast never: MetalLB's
`avoidBuggyIPs`) to Services by key, honours a requested address (`spec.loadBalancerIP` or
the `metallb.universe.tf/loadBalancerIPs` annotation) and refuses an address another
Service holds, with MetalLB's words. `announcer(ip, candidates)` picks the node that answers
for an address the way MetalLB's layer-2 speakers agree without talking: the candidate with
the smallest sha256 of "node#ip", so every address lands on one node and addresses spread.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable

from control.addresses import LB_POOL, UNDERLAY_CIDR

__all__ = ["DEFAULT_POOL", "REQUEST_ANNOTATION", "AddressPool", "PoolError", "announcer",
           "check_underlay_pool", "parse_pool"]

DEFAULT_POOL = LB_POOL
REQUEST_ANNOTATION = "metallb.universe.tf/loadBalancerIPs"


class PoolError(Exception):
    """An address cannot be given to a Service; the message is MetalLB's reason."""


def parse_pool(cidr: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.IPv4Network(cidr.strip(), strict=True)
    except ValueError as exc:
        raise ValueError(f"LoadBalancer pool {cidr!r}: not an IPv4 network ({exc}); give a "
                         "CIDR such as 172.18.255.0/24") from None
    if net.num_addresses < 4:
        raise ValueError(f"LoadBalancer pool {cidr!r}: too small; use /30 or larger")
    return net


def check_underlay_pool(cidr: str, underlay: str = UNDERLAY_CIDR) -> str:
    """A pool for `knet up --lb-pool`: inside the underlay (the host reaches it there) and
    clear of its first /24 (the host's and the nodes' addresses)."""
    net = parse_pool(cidr)
    under = ipaddress.IPv4Network(underlay)
    nodes = next(under.subnets(new_prefix=max(under.prefixlen, 24)))
    if not net.subnet_of(under) or net.overlaps(nodes):
        raise ValueError(f"{cidr}: must lie inside the underlay {under} and outside {nodes} "
                         f"(the host's and nodes' addresses), e.g. {DEFAULT_POOL}")
    return str(net)


class AddressPool:
    """Which Service (by "ns/name") holds which pool address."""

    def __init__(self, cidr: str = DEFAULT_POOL) -> None:
        self.net = parse_pool(cidr)
        self.owner: dict[str, str] = {}   # ip -> service key
        self.held: dict[str, str] = {}    # service key -> ip

    def __repr__(self) -> str:
        return f"<AddressPool {self.net} {len(self.owner)} in use>"

    def contains(self, ip: str) -> bool:
        try:
            addr = ipaddress.IPv4Address(ip)
        except ValueError:
            return False
        return addr in self.net and addr not in (self.net.network_address,
                                                 self.net.broadcast_address)

    def get(self, key: str) -> str | None:
        return self.held.get(key)

    def assign(self, key: str, requested: str | None = None) -> str:
        """The address `key` holds after this call: its current one if it fits the request,
        else the requested one, else the lowest free one. Raises PoolError (nothing changed)."""
        current = self.held.get(key)
        if requested:
            if current == requested:
                return current
            if not self.contains(requested):
                raise PoolError(f'"{requested}" is not allowed in config (the pool is '
                                f"{self.net})")
            other = self.owner.get(requested)
            if other is not None and other != key:
                raise PoolError(f'can\'t change sharing key for "{key}", address also in use '
                                f"by {other}")
            self.release(key)
            self._take(key, requested)
            return requested
        if current is not None:
            return current
        for addr in self.net.hosts():
            ip = str(addr)
            if ip not in self.owner:
                self._take(key, ip)
                return ip
        raise PoolError("no available IPs")

    def mark(self, key: str, ip: str) -> bool:
        """Record an address found in a Service's status (at start); False if it is not the
        pool's or another Service holds it already (the later one gets a new address)."""
        if not self.contains(ip) or self.owner.get(ip, key) != key or key in self.held:
            return False
        self._take(key, ip)
        return True

    def release(self, key: str) -> str | None:
        ip = self.held.pop(key, None)
        if ip is not None:
            self.owner.pop(ip, None)
        return ip

    def _take(self, key: str, ip: str) -> None:
        self.owner[ip] = key
        self.held[key] = ip


def _rank(node: str, ip: str) -> bytes:
    return hashlib.sha256(f"{node}#{ip}".encode()).digest()


def announcer(ip: str, candidates: Iterable[str]) -> str | None:
    """The node that answers for `ip` among `candidates` (None if there is none)."""
    nodes = sorted(set(candidates))
    return min(nodes, key=lambda n: _rank(n, ip)) if nodes else None
