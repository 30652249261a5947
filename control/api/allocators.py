"""ClusterIP and NodePort allocation for Services.

Two in-memory bitmaps, rebuilt from the stored Services when the server starts, so the store
stays the only source of truth. ClusterIPs come from 10.96.0.0/12 (10.96.0.1 is the
`kubernetes` Service's and 10.96.0.10 is kept for kube-dns: both are only handed out on
request); NodePorts from 30000-32767. Dynamic picks start at a random offset and scan, like
Kubernetes' bitmap allocator. A taken or out-of-range request is a 422 naming the field.
"""

from __future__ import annotations

import ipaddress
import random

from control.addresses import CLUSTER_DNS_IP, KUBERNETES_IP, NODE_PORT_RANGE, SERVICE_CIDR
from control.errors import Cause, Invalid
from control.models.fielderrors import show

__all__ = ["NODE_PORT_RANGE", "SERVICE_CIDR", "IPAllocator", "PortAllocator"]

RESERVED_IPS = (KUBERNETES_IP, CLUSTER_DNS_IP)


def _invalid(name: str, field: str, value: object, message: str) -> Invalid:
    body = f"Invalid value: {show(value)}: {message}"
    return Invalid(f'Service "{name}" is invalid: {field}: {body}', kind="Service", name=name,
                   causes=[Cause(field=field, message=body, reason="FieldValueInvalid")])


class IPAllocator:
    """ClusterIPs of one CIDR; the network and broadcast addresses are never used."""

    def __init__(self, cidr: str = SERVICE_CIDR, *, reserved: tuple[str, ...] = RESERVED_IPS,
                 rng: random.Random | None = None) -> None:
        self.net = ipaddress.IPv4Network(cidr)
        self.base = int(self.net.network_address)
        self.size = self.net.num_addresses
        self.used: set[int] = set()
        self.reserved = {int(ipaddress.IPv4Address(ip)) for ip in reserved}
        self.rng = rng or random.Random()

    def allocate(self, *, service: str, requested: str | None = None,
                 field: str = "spec.clusterIP") -> str:
        if requested:
            return self._take(service, requested, field)
        start = self.rng.randrange(1, self.size - 1)
        for n in range(self.size - 2):
            off = 1 + (start - 1 + n) % (self.size - 2)
            addr = self.base + off
            if addr not in self.used and addr not in self.reserved:
                self.used.add(addr)
                return str(ipaddress.IPv4Address(addr))
        raise _invalid(service, field, "", f"no ClusterIP left in {self.net}; delete unused "
                       "Services or use clusterIP: None")

    def _take(self, service: str, requested: str, field: str) -> str:
        try:
            addr = ipaddress.IPv4Address(requested)
        except ValueError:
            raise _invalid(service, field, requested, "must be a valid IP address") from None
        if addr not in self.net or int(addr) in (self.base, self.base + self.size - 1):
            raise _invalid(service, field, requested,
                           f"provided IP is not in the valid range. The range of valid IPs "
                           f"is {self.net}")
        if int(addr) in self.used:
            raise _invalid(service, field, requested, "provided IP is already allocated")
        self.used.add(int(addr))
        return str(addr)

    def mark(self, ip: str) -> None:
        """Record an IP found in the store (restart)."""
        try:
            self.used.add(int(ipaddress.IPv4Address(ip)))
        except ValueError:
            pass

    def release(self, ip: str | None) -> None:
        if not ip or ip == "None":
            return
        try:
            self.used.discard(int(ipaddress.IPv4Address(ip)))
        except ValueError:
            pass


class PortAllocator:
    """NodePorts of one range."""

    def __init__(self, low: int = NODE_PORT_RANGE[0], high: int = NODE_PORT_RANGE[1], *,
                 rng: random.Random | None = None) -> None:
        self.low, self.high = low, high
        self.used: set[int] = set()
        self.rng = rng or random.Random()

    def allocate(self, *, service: str, field: str, requested: int | None = None) -> int:
        if requested:
            if not self.low <= requested <= self.high:
                raise _invalid(service, field, requested,
                               f"provided port is not in the valid range. The range of valid "
                               f"ports is {self.low}-{self.high}")
            if requested in self.used:
                raise _invalid(service, field, requested, "provided port is already allocated")
            self.used.add(requested)
            return requested
        span = self.high - self.low + 1
        start = self.rng.randrange(span)
        for n in range(span):
            port = self.low + (start + n) % span
            if port not in self.used:
                self.used.add(port)
                return port
        raise _invalid(service, field, 0, f"no NodePort left in {self.low}-{self.high}")

    def mark(self, port: int) -> None:
        self.used.add(int(port))

    def release(self, port: int | None) -> None:
        if port:
            self.used.discard(int(port))
