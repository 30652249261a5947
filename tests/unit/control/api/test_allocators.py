"""ClusterIP and NodePort allocators: reserved addresses only on request, no duplicates,
ranges enforced, exhaustion reported, release makes room again."""

from __future__ import annotations

import random

import pytest

from control.api.allocators import IPAllocator, PortAllocator
from control.errors import Invalid


def test_reserved_ips_are_only_given_on_request() -> None:
    ips = IPAllocator("10.96.0.0/29", reserved=("10.96.0.1",), rng=random.Random(1))
    got = {ips.allocate(service=f"s{i}") for i in range(5)}
    assert got == {"10.96.0.2", "10.96.0.3", "10.96.0.4", "10.96.0.5", "10.96.0.6"}
    with pytest.raises(Invalid, match="no ClusterIP left"):
        ips.allocate(service="more")
    assert ips.allocate(service="kubernetes", requested="10.96.0.1") == "10.96.0.1"
    ips.release("10.96.0.4")
    assert ips.allocate(service="again") == "10.96.0.4"


def test_requested_ip_checks() -> None:
    ips = IPAllocator()
    assert ips.allocate(service="dns", requested="10.96.0.10") == "10.96.0.10"
    with pytest.raises(Invalid, match="already allocated") as err:
        ips.allocate(service="dup", requested="10.96.0.10")
    assert err.value.causes[0].field == "spec.clusterIP"
    with pytest.raises(Invalid, match="not in the valid range"):
        ips.allocate(service="far", requested="192.168.1.1")
    with pytest.raises(Invalid, match="valid IP"):
        ips.allocate(service="junk", requested="10.96.0.300")


def test_node_ports() -> None:
    ports = PortAllocator(30000, 30002, rng=random.Random(2))
    assert sorted(ports.allocate(service="s", field="f") for _ in range(3)) == [
        30000, 30001, 30002]
    with pytest.raises(Invalid, match="no NodePort left"):
        ports.allocate(service="s", field="spec.ports[0].nodePort")
    with pytest.raises(Invalid, match="provided port is already allocated") as err:
        ports.allocate(service="t", field="spec.ports[1].nodePort", requested=30001)
    assert err.value.causes[0].field == "spec.ports[1].nodePort"
    with pytest.raises(Invalid, match="range of valid ports is 30000-30002"):
        ports.allocate(service="t", field="f", requested=80)
    ports.release(30001)
    assert ports.allocate(service="t", field="f", requested=30001) == 30001
