"""The Dataplane contract: one suite, run against FakeDataplane (tests/unit) and
NetlinkDataplane (tests/integration, inside the sandbox). A module that star-imports this
provides a `make_dp(state_dir)` fixture returning a factory of dataplanes that share one
kernel, so that "restart" means a new dataplane object over the same state dir and kernel."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from knet.dataplane.base import Dataplane, NodeSpec
from knet.errors import Exhausted, KernelObjectMissing, UsageError

N1, N2 = NodeSpec.default(1), NodeSpec.default(2)


@pytest.fixture
async def dp(make_dp: Callable[[], Dataplane]) -> AsyncIterator[Dataplane]:
    d = make_dp()
    await d.ensure_host()
    await d.ensure_node(N1)
    await d.ensure_node(N2)
    try:
        yield d
    finally:
        await d.cleanup()
        await d.close()


def test_node_defaults() -> None:
    s = NodeSpec.default(3)
    assert (s.name, s.underlay_ip, s.pod_cidr, s.gateway) == (
        "node-3", "172.18.0.4", "10.244.3.0/24", "10.244.3.1")
    assert s.netns == "knet-node-3"


async def test_pod_gets_an_address_of_its_node_and_second_ensure_is_a_noop(dp: Dataplane) -> None:
    a = await dp.ensure_pod("node-1", "default/web-1")
    assert ipaddress.IPv4Address(a.ip) in ipaddress.IPv4Network(N1.pod_cidr)
    assert a.ip != N1.gateway and a.gateway == N1.gateway and a.node == "node-1"
    assert len(a.host_ifname) <= 15 and a.host_ifname.startswith("kn")
    assert await dp.ensure_pod("node-1", "default/web-1") == a
    b = await dp.ensure_pod("node-2", "default/web-2")
    assert ipaddress.IPv4Address(b.ip) in ipaddress.IPv4Network(N2.pod_cidr)
    assert [p.key for p in await dp.list_pods("node-1")] == ["default/web-1"]


async def test_host_and_node_ensured_again_keep_their_pods(dp: Dataplane) -> None:
    a = await dp.ensure_pod("node-1", "default/a")
    assert (await dp.ensure_host()).pod_cidr == "10.244.0.0/16"
    info = await dp.ensure_node(N1)
    assert await dp.ensure_node(N1) == info and info.netns == "knet-node-1"
    assert await dp.list_pods("node-1") == [a]
    with pytest.raises(UsageError, match="already set up"):
        await dp.ensure_host(service_cidr="10.112.0.0/12")


async def test_addresses_are_never_handed_out_twice(dp: Dataplane) -> None:
    pods = [await dp.ensure_pod("node-1", f"default/p{i}") for i in range(6)]
    assert len({p.ip for p in pods}) == 6
    await dp.delete_pod("node-1", "default/p0")
    fresh = await dp.ensure_pod("node-1", "default/p6")
    assert fresh.ip not in {p.ip for p in pods[1:]}


async def test_delete_pod_is_a_noop_when_gone(dp: Dataplane) -> None:
    await dp.ensure_pod("node-1", "default/a")
    await dp.delete_pod("node-1", "default/a")
    await dp.delete_pod("node-1", "default/a")
    await dp.delete_pod("node-1", "default/never-made")
    assert await dp.list_pods("node-1") == []


async def test_state_survives_a_restart(dp: Dataplane, make_dp: Callable[[], Dataplane]) -> None:
    a = await dp.ensure_pod("node-1", "default/a")
    again = make_dp()
    try:
        assert await again.list_pods("node-1") == [a]
        assert await again.ensure_pod("node-1", "default/a") == a
        b = await again.ensure_pod("node-1", "default/b")
        assert b.ip != a.ip
        assert await dp.list_pods("node-1") == [a, b]     # the first one sees it too
        assert {n.name for n in await again.list_nodes()} == {"node-1", "node-2"}
    finally:
        await again.close()


async def test_delete_node_removes_its_pods(dp: Dataplane) -> None:
    await dp.ensure_pod("node-2", "default/a")
    await dp.ensure_pod("node-2", "default/b")
    await dp.delete_node("node-2")
    await dp.delete_node("node-2")
    assert [n.name for n in await dp.list_nodes()] == ["node-1"]
    with pytest.raises(KernelObjectMissing, match="node-2"):
        await dp.list_pods("node-2")


async def test_service_ips(dp: Dataplane) -> None:
    await dp.add_service_ip("node-1", "10.96.0.10")
    await dp.add_service_ip("node-1", "10.96.0.10")
    await dp.add_service_ip("node-1", "10.96.0.1")
    assert await dp.list_service_ips("node-1") == ["10.96.0.1", "10.96.0.10"]
    assert await dp.list_service_ips("node-2") == []
    await dp.remove_service_ip("node-1", "10.96.0.10")
    await dp.remove_service_ip("node-1", "10.96.0.10")
    assert await dp.list_service_ips("node-1") == ["10.96.0.1"]
    with pytest.raises(UsageError, match="service IP"):
        await dp.add_service_ip("node-1", "10.96.0.300")


@pytest.mark.parametrize("key", ["web-1", "Default/web", "default/", "a/b/c", "default/Web_1"])
async def test_invalid_pod_key_is_refused_and_leaves_nothing(dp: Dataplane, key: str) -> None:
    with pytest.raises(UsageError, match="invalid key"):
        await dp.ensure_pod("node-1", key)
    assert await dp.list_pods("node-1") == []


async def test_invalid_node_name_is_refused(dp: Dataplane) -> None:
    with pytest.raises(UsageError, match="invalid name"):
        await dp.ensure_node(NodeSpec(name="Node_1", index=5, underlay_ip="172.18.0.6",
                                      pod_cidr="10.244.5.0/24"))
    with pytest.raises(UsageError, match="invalid name"):
        await dp.ensure_pod("x" * 70, "default/a")
    assert len(await dp.list_nodes()) == 2


async def test_exhausted_pod_cidr(dp: Dataplane) -> None:
    small = NodeSpec(name="tiny", index=9, underlay_ip="172.18.0.10", pod_cidr="10.244.9.0/29")
    await dp.ensure_node(small)
    made = [await dp.ensure_pod("tiny", f"default/p{i}") for i in range(5)]
    assert {p.ip for p in made} == {f"10.244.9.{i}" for i in range(2, 7)}
    with pytest.raises(Exhausted, match=r"tiny.*10\.244\.9\.0/29.*delete pods"):
        await dp.ensure_pod("tiny", "default/one-too-many")
    assert len(await dp.list_pods("tiny")) == 5
    await dp.delete_pod("tiny", "default/p3")
    assert (await dp.ensure_pod("tiny", "default/one-too-many")).ip == made[3].ip


async def test_explicit_ip(dp: Dataplane) -> None:
    a = await dp.ensure_pod("node-1", "default/a", ip="10.244.1.77")
    assert a.ip == "10.244.1.77"
    with pytest.raises(UsageError, match="already held by pod default/a"):
        await dp.ensure_pod("node-1", "default/b", ip="10.244.1.77")
    with pytest.raises(UsageError, match="not a usable pod address"):
        await dp.ensure_pod("node-1", "default/c", ip="10.244.1.1")
    assert [p.key for p in await dp.list_pods("node-1")] == ["default/a"]


async def test_unknown_node(dp: Dataplane) -> None:
    with pytest.raises(KernelObjectMissing, match="node node-7: not set up"):
        await dp.ensure_pod("node-7", "default/a")


async def test_node_needs_host_first(make_dp: Callable[[], Dataplane]) -> None:
    d = make_dp()
    try:
        with pytest.raises(KernelObjectMissing, match="ensure_host"):
            await d.ensure_node(N1)
    finally:
        await d.close()


async def test_overlapping_cidrs_are_refused(make_dp: Callable[[], Dataplane]) -> None:
    d = make_dp()
    try:
        with pytest.raises(UsageError, match="overlaps"):
            await d.ensure_host(pod_cidr="10.96.0.0/16")
        with pytest.raises(UsageError, match="invalid IPv4 network"):
            await d.ensure_host(pod_cidr="10.244.0.1/16")
        assert await d.list_nodes() == []
    finally:
        await d.cleanup()
        await d.close()


async def test_nodes_may_not_clash(dp: Dataplane) -> None:
    clash = NodeSpec(name="node-9", index=9, underlay_ip="172.18.0.10", pod_cidr=N1.pod_cidr)
    with pytest.raises(UsageError, match="clashes with node node-1"):
        await dp.ensure_node(clash)
    assert await dp.ensure_node(N1) == (await dp.list_nodes())[0]


async def test_node_routes_are_level_triggered(dp: Dataplane) -> None:
    await dp.ensure_node_routes("node-1", [N1, N2])
    await dp.ensure_node_routes("node-1", [N1, N2])
    await dp.ensure_node_routes("node-1", [N1])      # node-2 went away: stale route removed
    with pytest.raises(KernelObjectMissing):
        await dp.ensure_node_routes("node-8", [N1])


async def test_cleanup_then_start_again(dp: Dataplane) -> None:
    await dp.ensure_pod("node-1", "default/a")
    await dp.cleanup()
    assert await dp.list_nodes() == []
    await dp.ensure_host()
    await dp.ensure_node(N1)
    assert (await dp.ensure_pod("node-1", "default/a")).ip.startswith("10.244.1.")


def _state_files(state_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(state_dir)) for p in state_dir.rglob("*") if p.is_file())
