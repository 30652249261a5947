"""`python -m bench overlay`: what the overlay and the CNI contract cost, in one run.

Throughput: iperf3 (TCP, one stream, S seconds) from a pod on one node to a pod on another,
with host-gw routes (nodes 1 and 2, pod MTU 1500) and with the VXLAN overlay (nodes 3 and 4:
flannel.1, pod MTU 1450), beside "direct" (node netns to node netns over the underlay: no pod
bridge, no encapsulation). Pod wiring: ms per pod ADD (+DEL) through knet's plugin in-process
(what the agent does), knet's plugin exec'd as a program (`python -m knet.cni`, what any CNI
runtime would do), and the reference plugins (loopback, bridge + host-local, portmap: three
execs per pod). Re-execs itself inside `knet sandbox` unless KNET_SANDBOX=1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import table
from knet.cni.runtime import CniDataplane
from knet.dataplane.base import NodeSpec
from knet.dataplane.netlink import NetlinkDataplane
from knet.dataplane.overlay import VXLAN_MTU, VxlanPeer, vtep_mac
from knet.dataplane.vxlan import VxlanOverlay

NAME = "overlay"
DESCRIPTION = ("cross-node pod throughput host-gw vs VXLAN vs direct; ms per pod: knet's CNI "
               "plugin in-process / exec'd vs the reference plugins")


def _iperf(server_ns: str, server_ip: str, client_ns: str, seconds: float) -> float:
    """Gbit/s of one TCP stream from client_ns to server_ns."""
    srv = subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-B",
                            server_ip], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        out = subprocess.run(["ip", "netns", "exec", client_ns, "iperf3", "-c", server_ip,
                              "-t", str(seconds), "-J"], capture_output=True, text=True,
                             timeout=seconds + 30, check=True).stdout
        return float(json.loads(out)["end"]["sum_received"]["bits_per_second"]) / 1e9
    finally:
        srv.kill()
        srv.wait()


def _peer(spec: NodeSpec) -> VxlanPeer:
    return VxlanPeer(spec.name, spec.pod_cidr, vtep_mac(spec.underlay_ip), spec.underlay_ip)


async def _throughput(dp: NetlinkDataplane, seconds: float) -> list[tuple[str, float]]:
    hg = [NodeSpec.default(1), NodeSpec.default(2)]
    vx = [NodeSpec.default(3, mtu=VXLAN_MTU), NodeSpec.default(4, mtu=VXLAN_MTU)]
    infos = [await dp.ensure_node(s) for s in hg + vx]
    await dp.ensure_node_routes("node-1", hg)
    await dp.ensure_node_routes("node-2", hg)
    overlay = VxlanOverlay()
    for info in infos[2:]:
        await overlay.ensure_device(info)
    await overlay.set_peers(infos[2], [_peer(vx[1])])
    await overlay.set_peers(infos[3], [_peer(vx[0])])
    pods = [await dp.ensure_pod(s.name, "bench/iperf") for s in hg + vx]
    return [
        ("direct (node eth0 to node eth0)",
         _iperf(hg[1].netns, hg[1].underlay_ip, hg[0].netns, seconds)),
        ("host-gw (pod to pod, MTU 1500)",
         _iperf(pods[1].netns, pods[1].ip, pods[0].netns, seconds)),
        ("vxlan (pod to pod, MTU 1450)",
         _iperf(pods[3].netns, pods[3].ip, pods[2].netns, seconds)),
    ]


def _exec_plugin(state: Path, command: str, key: str) -> None:
    from knet.dataplane import names

    ns, name = key.split("/")
    netns = names.pod_netns("node-5", key)
    env = {**os.environ, "CNI_COMMAND": command, "CNI_CONTAINERID": netns,
           "CNI_NETNS": f"/run/netns/{netns}", "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni",
           "CNI_ARGS": f"K8S_POD_NAMESPACE={ns};K8S_POD_NAME={name}"}
    conf = {"cniVersion": "1.0.0", "name": "knet", "type": "knet", "node": "node-5",
            "dataplaneDir": str(state / "dataplane")}
    r = subprocess.run([sys.executable, "-m", "knet.cni"], input=json.dumps(conf).encode(),
                       env=env, capture_output=True, timeout=60, check=False)
    if r.returncode != 0:
        raise SystemExit(f"knet.cni {command} {key}: {r.stdout.decode()}")


async def _wiring(dp: NetlinkDataplane, state: Path, n: int) -> list[tuple[str, float, float]]:
    """(method, ADD ms/pod, DEL ms/pod) for n pods each."""
    out = []
    for i, mode in ((5, "builtin"), (6, "reference")):
        spec = NodeSpec.default(i)
        cdp = CniDataplane(dp, node=spec, mode=mode, state_dir=state)
        await cdp.ensure_node(spec)
        t0 = time.perf_counter()
        for k in range(n):
            await cdp.ensure_pod(spec.name, f"bench/p-{k}")
        t1 = time.perf_counter()
        for k in range(n):
            await cdp.delete_pod(spec.name, f"bench/p-{k}")
        t2 = time.perf_counter()
        label = ("knet plugin, in-process (the agent)" if mode == "builtin"
                 else "reference plugins (loopback, bridge+host-local, portmap)")
        out.append((label, (t1 - t0) * 1000 / n, (t2 - t1) * 1000 / n))
        await asyncio.sleep(2.0)                   # let the kernel reap the namespaces
        if mode == "builtin":
            t0 = time.perf_counter()
            for k in range(n):
                _exec_plugin(state, "ADD", f"bench/x-{k}")
            t1 = time.perf_counter()
            for k in range(n):
                _exec_plugin(state, "DEL", f"bench/x-{k}")
            t2 = time.perf_counter()
            out.append(("knet plugin, exec'd (python -m knet.cni)", (t1 - t0) * 1000 / n,
                        (t2 - t1) * 1000 / n))
            await asyncio.sleep(2.0)
    return out


async def _run(seconds: float, pods: int) -> tuple[list[tuple[str, float]],
                                                   list[tuple[str, float, float]]]:
    with tempfile.TemporaryDirectory(prefix="knet-bench-") as tmp:
        state = Path(tmp)
        dp = NetlinkDataplane(state / "dataplane")
        try:
            await dp.ensure_host()
            thr = await _throughput(dp, seconds)
            wiring = await _wiring(dp, state, pods)
            return thr, wiring
        finally:
            await dp.cleanup()
            await dp.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench overlay", description=DESCRIPTION)
    parser.add_argument("--seconds", type=float, default=5.0, help="iperf3 time per path")
    parser.add_argument("--pods", type=int, default=20, help="pods per wiring method")
    args = parser.parse_args(argv)
    if os.environ.get("KNET_SANDBOX") != "1":
        cmd = [sys.executable, "-m", "knet.cli.main", "sandbox", "--", sys.executable, "-m",
               "bench.overlay", *argv]
        return subprocess.run(cmd, check=False).returncode
    thr, wiring = asyncio.run(_run(args.seconds, args.pods))
    print(f"cross-node throughput, one TCP stream, iperf3 {args.seconds:g} s per path "
          f"({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})")
    print(table(["path", "Gbit/s"], [[p, g] for p, g in thr], value_col=1,
                ratio_title="vs direct"))
    print(f"\npod wiring, {args.pods} pods per method (ADD, then DEL)")
    print(table(["method", "ADD ms/pod", "DEL ms/pod"], [list(w) for w in wiring],
                value_col=1, ratio_title="ADD vs in-process"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
