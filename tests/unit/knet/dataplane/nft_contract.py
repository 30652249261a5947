"""The nftables contract: one suite, run against FakeNft (tests/unit) and LibNft
(tests/integration, inside the sandbox, on a netns the fixture makes). A module that
star-imports this provides `nft` (an Nft) and `netns` (a namespace name or None)."""

from __future__ import annotations

from typing import Any

import pytest

from knet.dataplane.nft import Nft, NftError, table_objects

F, T = "inet", "knet_contract"
TCP80 = [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                    "right": 80}}, {"accept": None}]


def _base() -> list[dict[str, Any]]:
    return [{"add": {"table": {"family": F, "name": T}}},
            {"add": {"chain": {"family": F, "table": T, "name": "input", "type": "filter",
                               "hook": "input", "prio": 0, "policy": "accept"}}},
            {"add": {"set": {"family": F, "table": T, "name": "allowed", "type": "ipv4_addr"}}},
            {"add": {"rule": {"family": F, "table": T, "chain": "input", "expr": TCP80}}}]


def _kinds(objs: list[dict[str, Any]]) -> list[str]:
    return [next(iter(o)) for o in objs]


async def test_a_batch_makes_the_table_as_listed(nft: Nft, netns: str | None) -> None:
    assert await nft.table(netns, F, T) is None
    await nft.apply(netns, _base())
    got = table_objects(await nft.table(netns, F, T) or [])
    assert sorted(_kinds(got)) == ["chain", "rule", "set", "table"]
    rule = next(o["rule"] for o in got if "rule" in o)
    assert rule["chain"] == "input" and rule["expr"] == TCP80
    chain = next(o["chain"] for o in got if "chain" in o)
    assert (chain["hook"], chain["prio"], chain["policy"]) == ("input", 0, "accept")
    assert await nft.delete_table(netns, F, T) is True
    assert await nft.table(netns, F, T) is None
    assert await nft.delete_table(netns, F, T) is False


async def test_a_failing_batch_applies_nothing(nft: Nft, netns: str | None) -> None:
    bad = _base() + [{"add": {"rule": {"family": F, "table": T, "chain": "missing",
                                       "expr": [{"accept": None}]}}}]
    with pytest.raises(NftError, match="nothing of this batch was applied"):
        await nft.apply(netns, bad)
    assert await nft.table(netns, F, T) is None


async def test_elements_and_flush(nft: Nft, netns: str | None) -> None:
    await nft.apply(netns, _base() + [
        {"add": {"element": {"family": F, "table": T, "name": "allowed",
                             "elem": ["10.244.1.5", "10.244.2.7"]}}}])
    got = table_objects(await nft.table(netns, F, T) or [])
    elems = next(o["set"] for o in got if "set" in o)["elem"]
    assert sorted(elems) == ["10.244.1.5", "10.244.2.7"]
    await nft.apply(netns, [{"flush": {"chain": {"family": F, "table": T, "name": "input"}}}])
    got = table_objects(await nft.table(netns, F, T) or [])
    assert "rule" not in _kinds(got) and "chain" in _kinds(got)
    await nft.delete_table(netns, F, T)
