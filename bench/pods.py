"""`python -m bench pods`: ms per pod sandbox, knet's NetlinkDataplane beside `ip` commands.

A pod sandbox = netns + veth (node end on cni0, pod end eth0) + address + default route +
lo up. knet makes it without forking (see knet/dataplane/netlink.py); the anchor is the
common shell recipe (`ip netns add`, `ip link add` a veth in the node, move one end into
the pod netns, rename, address, up, route), one `ip` process per step, in the same run on
the same kind of node. Runs itself inside `knet sandbox` so nothing touches the host.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time

from bench.common import table
from knet.dataplane.base import NodeSpec
from knet.dataplane.netlink import NetlinkDataplane

NAME = "pods"
DESCRIPTION = "ms per pod sandbox (netns+veth+addr+route+lo) for 10/100/500 pods: knet vs ip"

# the kernel tears deleted namespaces down in the background (holding the rtnl lock): let
# that finish before the next side is timed, so neither pays for the other's cleanup
SETTLE_S = 3.0
# /22 pod CIDRs so that 500 pods fit on one node
KNET_NODE = NodeSpec(name="node-1", index=1, underlay_ip="172.18.0.2", pod_cidr="10.244.4.0/22")
IP_NODE = NodeSpec(name="node-2", index=2, underlay_ip="172.18.0.3", pod_cidr="10.244.8.0/22")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, stdout=subprocess.DEVNULL, timeout=30)


def _ip_recipe_pod(node: str, i: int, gateway: str) -> None:
    """One pod the way shell scripts and tutorials do it: one `ip` process per step."""
    ns, host, peer = f"ipbench-{i}", f"ipb{i}", f"ipb{i}p"
    addr = f"10.244.{8 + (i + 2) // 256}.{(i + 2) % 256}/22"
    _ip("netns", "add", ns)
    _ip("-n", node, "link", "add", host, "type", "veth", "peer", "name", peer)
    _ip("-n", node, "link", "set", peer, "netns", ns)
    _ip("-n", node, "link", "set", host, "master", "cni0", "up")
    _ip("-n", ns, "link", "set", peer, "name", "eth0")
    _ip("-n", ns, "addr", "add", addr, "dev", "eth0")
    _ip("-n", ns, "link", "set", "eth0", "up")
    _ip("-n", ns, "link", "set", "lo", "up")
    _ip("-n", ns, "route", "add", "default", "via", gateway)


def _ip_recipe_cleanup(node: str, n: int) -> None:
    for i in range(n):
        _ip("-n", node, "link", "del", f"ipb{i}")
        _ip("netns", "del", f"ipbench-{i}")


def _cpu() -> float:
    """CPU seconds of this process and its reaped children (user + system)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


Sample = tuple[float, float]       # (wall ms/pod, cpu ms/pod)


async def _round(dp: NetlinkDataplane, n: int) -> tuple[Sample, Sample]:
    """knet and ip samples for n pods, each side cleaned up afterwards."""
    t0, c0 = time.perf_counter(), _cpu()
    for i in range(n):
        await dp.ensure_pod(KNET_NODE.name, f"bench/pod-{i}")
    knet = ((time.perf_counter() - t0) * 1000 / n, (_cpu() - c0) * 1000 / n)
    for i in range(n):
        await dp.delete_pod(KNET_NODE.name, f"bench/pod-{i}")
    await asyncio.sleep(SETTLE_S)
    t0, c0 = time.perf_counter(), _cpu()
    for i in range(n):
        _ip_recipe_pod(IP_NODE.netns, i, IP_NODE.gateway)
    ip = ((time.perf_counter() - t0) * 1000 / n, (_cpu() - c0) * 1000 / n)
    _ip_recipe_cleanup(IP_NODE.netns, n)
    await asyncio.sleep(SETTLE_S)
    return knet, ip


async def _run(sizes: list[int]) -> list[tuple[int, Sample, Sample]]:
    with tempfile.TemporaryDirectory(prefix="knet-bench-") as state:
        dp = NetlinkDataplane(state)
        try:
            await dp.ensure_host()
            await dp.ensure_node(KNET_NODE)
            await dp.ensure_node(IP_NODE)
            return [(n, *await _round(dp, n)) for n in sizes]
        finally:
            await dp.cleanup()
            await dp.close()


def _table(rows: list[tuple[int, Sample, Sample]]) -> str:
    cells: list[list[str | int | float | None]] = []
    for n, knet, ip in rows:
        cells += [[n, "knet (netlink, no fork)", *knet], [n, "ip commands", *ip]]
    return table(["pods", "method", "wall ms/pod", "cpu ms/pod"], cells, value_col=2,
                 group_col=0, ratio_title="wall vs knet")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench pods", description=DESCRIPTION)
    parser.add_argument("--sizes", default="10,100,500", help="comma-separated pod counts")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    args = parser.parse_args(argv)
    if os.environ.get("KNET_SANDBOX") != "1":
        cmd = [sys.executable, "-m", "knet.cli.main", "sandbox", "--", sys.executable, "-m",
               "bench.pods", *argv]
        return subprocess.run(cmd, check=False).returncode
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.loop == "uvloop":
        import uvloop
        rows = uvloop.run(_run(sizes))
    else:
        rows = asyncio.run(_run(sizes))
    print(f"pod sandboxes on one node ({args.loop} loop, {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.1f}); ip commands = one `ip` process per step;\n"
          "cpu = user+system time of the benchmark and its `ip` children (steadier than wall "
          "on a busy machine)")
    print(_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
