"""Host-side announcements of LoadBalancer addresses on the real kernel: a node's announcer
puts a /32 route to its node address in the host netns, a hand-over to another node replaces
it, the old node's withdraw then leaves the new node's route alone, and withdraw_all removes
exactly what the record names. Runs inside `knet sandbox`."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from knet.dataplane.base import NodeSpec
from knet.dataplane.hostroutes import HostRoutes
from knet.dataplane.netlink import NetlinkDataplane

LB = "172.18.255.7"


def route(ip: str) -> str:
    return subprocess.run(["ip", "route", "show", f"{ip}/32"], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[Path]:
    dp = NetlinkDataplane(tmp_path / "dataplane")
    await dp.ensure_host()
    for i in (1, 2):
        await dp.ensure_node(NodeSpec.default(i))
    try:
        yield tmp_path / "dataplane"
    finally:
        await dp.cleanup()
        await dp.close()


async def test_hand_over_and_withdraw(nodes: Path) -> None:
    one, two = HostRoutes(nodes, "node-1"), HostRoutes(nodes, "node-2")
    try:
        await one.announce(LB, "172.18.0.2")
        assert route(LB).startswith(f"{LB} via 172.18.0.2 dev knet0 proto 77")
        await two.announce(LB, "172.18.0.3")           # the new announcer first ...
        await one.withdraw(LB, "172.18.0.2")           # ... then the old one lets go
        assert route(LB).startswith(f"{LB} via 172.18.0.3 dev knet0")
        assert one.recorded() == {} and two.recorded() == {LB: "172.18.0.3"}
        again = HostRoutes(nodes, "node-2")            # a restarted proxy reads the record
        await again.withdraw_all()
        await again.close()
        assert route(LB) == "" and two.recorded() == {}
        await one.withdraw(LB, "172.18.0.2")           # gone already: a no-op
    finally:
        await one.close()
        await two.close()
