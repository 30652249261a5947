"""The transparent sockets' reply path (knet/dataplane/transparent.py) on FakeNft and a fake
netlink side: recorded before it is made, idempotent, removed by record, knet's tables only."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from knet.dataplane.nft import FakeNft
from knet.dataplane.transparent import (
    MARK,
    NFT_TABLE,
    ROUTE_TABLE,
    Transparent,
    TransparentRecord,
)

MAC = "0a:58:0a:f4:01:01"


class FakeRoutes:
    def __init__(self, bridges: dict[str, str]) -> None:
        self.bridges = bridges
        self.rules: set[tuple[str, int, int]] = set()

    async def set_rule(self, netns: str, rec: TransparentRecord, *, present: bool) -> None:
        key = (netns, rec.mark, rec.table)
        (self.rules.add if present else self.rules.discard)(key)

    async def bridge_mac(self, netns: str, bridge: str) -> str | None:
        return self.bridges.get(f"{netns}/{bridge}")

    def bridge_nf(self, netns: str) -> bool:
        return True


def _world(tmp_path: Path) -> tuple[Transparent, FakeNft, FakeRoutes]:
    nft, routes = FakeNft(), FakeRoutes({"knet-node-1/cni0": MAC})
    return Transparent(tmp_path, nft=nft, routes=routes,
                       netns_exists=lambda ns: ns == "knet-node-1"), nft, routes


def test_ensure_records_then_programs_both_tables_and_the_rule(tmp_path: Path) -> None:
    t, nft, routes = _world(tmp_path)
    nft.tables[("knet-node-1", "inet", "knet_netpol")] = {"chains": {}, "sets": {}}  # not ours
    asyncio.run(t.ensure("node-1", "knet-node-1"))
    asyncio.run(t.ensure("node-1", "knet-node-1"))   # again: the same state, nothing doubled
    assert json.loads((tmp_path / "transparent" / "node-1.json").read_text())["netns"] == \
        "knet-node-1"
    ip = asyncio.run(nft.table("knet-node-1", "ip", NFT_TABLE))
    bridge = asyncio.run(nft.table("knet-node-1", "bridge", NFT_TABLE))
    assert ip is not None and bridge is not None
    ip_rules = [o["rule"]["expr"] for o in ip if "rule" in o]
    assert len(ip_rules) == 1 and {"socket": {"key": "transparent"}} == \
        ip_rules[0][1]["match"]["left"]
    br_rules = [o["rule"]["expr"] for o in bridge if "rule" in o]
    assert len(br_rules) == 1 and br_rules[0][-1]["mangle"]["value"] == MAC
    assert routes.rules == {("knet-node-1", MARK, ROUTE_TABLE)}
    assert ("knet-node-1", "inet", "knet_netpol") in nft.tables


def test_remove_by_record_leaves_other_tables(tmp_path: Path) -> None:
    t, nft, routes = _world(tmp_path)
    nft.tables[("knet-node-1", "inet", "knet_netpol")] = {"chains": {}, "sets": {}}
    asyncio.run(t.ensure("node-1", "knet-node-1"))
    asyncio.run(t.cleanup())
    assert list(nft.tables) == [("knet-node-1", "inet", "knet_netpol")]
    assert routes.rules == set()
    assert t.recorded() == []
    asyncio.run(t.remove("node-1"))   # a no-op without a record


def test_missing_bridge_names_the_node_and_records_nothing(tmp_path: Path) -> None:
    t, nft, _ = _world(tmp_path)
    with pytest.raises(OSError, match="node node-2: bridge cni0 is missing in netns knet-node-2"):
        asyncio.run(t.ensure("node-2", "knet-node-2"))
    assert t.recorded() == [] and nft.tables == {}


def test_node_record_removal_drops_the_transparent_record(tmp_path: Path) -> None:
    from knet.dataplane.state import Records

    t, _, _ = _world(tmp_path)
    asyncio.run(t.ensure("node-1", "knet-node-1"))
    Records(tmp_path).drop_node("node-1")   # what delete_node does once the netns is gone
    assert t.recorded() == []


def test_the_service_cidr_skips_the_socket_lookup(tmp_path: Path) -> None:
    t, nft, _ = _world(tmp_path)
    asyncio.run(t.ensure("node-1", "knet-node-1", skip="10.96.0.0/12"))
    ip = asyncio.run(nft.table("knet-node-1", "ip", NFT_TABLE))
    assert ip is not None
    (rule,) = [o["rule"]["expr"] for o in ip if "rule" in o]
    assert rule[0] == {"match": {"op": "!=", "left": {"payload": {"protocol": "ip",
                                                                  "field": "daddr"}},
                                 "right": {"prefix": {"addr": "10.96.0.0", "len": 12}}}}
