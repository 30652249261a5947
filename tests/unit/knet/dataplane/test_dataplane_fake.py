"""The Dataplane contract on FakeDataplane, plus facts about the fake kernel it drives."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from dataplane_contract import *
from dataplane_contract import N1, N2, _state_files

from knet.dataplane.base import Dataplane
from knet.dataplane.fake import HOST, FakeDataplane, FakeKernel, SimulatedCrash
from knet.errors import DataplaneError, UsageError


@pytest.fixture
def kernel() -> FakeKernel:
    return FakeKernel()


@pytest.fixture
def make_dp(tmp_path: Path, kernel: FakeKernel) -> Callable[[], Dataplane]:
    return lambda: FakeDataplane(tmp_path, kernel=kernel)


async def test_fake_kernel_holds_the_pod(dp: FakeDataplane, kernel: FakeKernel) -> None:
    pod = await dp.ensure_pod("node-1", "default/a")
    eth0 = kernel.ns[pod.netns].links["eth0"]
    assert eth0.addrs == {pod.ip} and eth0.up and eth0.peer == ("knet-node-1", pod.host_ifname)
    assert kernel.ns["knet-node-1"].links[pod.host_ifname].master == "cni0"
    assert kernel.ns[pod.netns].routes == {"0.0.0.0/0": "10.244.1.1"}


async def test_fake_routes_host_and_nodes(dp: FakeDataplane, kernel: FakeKernel) -> None:
    await dp.ensure_node_routes("node-1", [N1, N2])
    assert kernel.ns["knet-node-1"].routes == {"0.0.0.0/0": "172.18.0.1",
                                              "10.244.2.0/24": "172.18.0.3"}
    assert kernel.ns[HOST].routes == {"10.244.1.0/24": "172.18.0.2",
                                      "10.244.2.0/24": "172.18.0.3",
                                      "10.96.0.0/12": "172.18.0.2"}
    await dp.delete_node("node-1")
    assert kernel.ns[HOST].routes == {"10.244.2.0/24": "172.18.0.3",
                                      "10.96.0.0/12": "172.18.0.3"}


async def test_crash_half_way_is_repaired(dp: FakeDataplane, kernel: FakeKernel,
                                          make_dp: Callable[[], Dataplane]) -> None:
    kernel.crash_at = "pod:netns"
    with pytest.raises(SimulatedCrash):
        await dp.ensure_pod("node-1", "default/a")
    pod = await make_dp().ensure_pod("node-1", "default/a")
    assert kernel.ns[pod.netns].links["eth0"].addrs == {pod.ip}
    assert pod.host_ifname in kernel.ns["knet-node-1"].links


async def test_cleanup_leaves_the_kernel_as_found(tmp_path: Path) -> None:
    kernel = FakeKernel()
    kernel.ns[HOST].links["eth9"] = before = type(kernel.ns[HOST].links["lo"])("veth")
    d = FakeDataplane(tmp_path, kernel=kernel)
    await d.ensure_host()
    await d.ensure_node(N1)
    kernel.crash_at = "pod:veth"
    with pytest.raises(SimulatedCrash):
        await d.ensure_pod("node-1", "default/half-made")
    await d.ensure_pod("node-1", "default/b")
    await d.cleanup()
    assert set(kernel.ns) == {HOST} and kernel.ns[HOST].links == {
        "lo": kernel.ns[HOST].links["lo"], "eth9": before}
    assert kernel.ns[HOST].routes == {}
    assert _state_files(tmp_path) == []


async def test_not_root(tmp_path: Path) -> None:
    d = FakeDataplane(tmp_path, kernel=FakeKernel(root=False))
    with pytest.raises(DataplaneError, match=r"needs root \(CAP_NET_ADMIN\)"):
        await d.ensure_host()
    assert _state_files(tmp_path) == []


async def test_host_overlap_is_refused(tmp_path: Path) -> None:
    kernel = FakeKernel(foreign=[("10.244.0.0/20", "route 10.244.0.0/20 dev eth1")])
    d = FakeDataplane(tmp_path, kernel=kernel)
    with pytest.raises(UsageError, match=r"pod CIDR 10.244.0.0/16 overlaps the host's own "
                                         r"route 10.244.0.0/20 dev eth1"):
        await d.ensure_host()
    await d.ensure_host(pod_cidr="10.200.0.0/16")
    assert set(kernel.ns[HOST].links) == {"lo", "knet0"}
