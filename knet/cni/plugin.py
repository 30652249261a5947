"""knet's built-in pod wiring as a CNI 1.0 plugin (type `knet`): `python -m knet.cni` or the
`knet-cni` command, and in-process from the agent (the same `invoke`, no exec, so the fast path
stays fast).

ADD makes the pod's sandbox through the Dataplane (netns, veth on cni0, address from knet's
IPAM, default route) and prints the result; DEL removes it (and succeeds if it is gone); CHECK
compares the kernel's record with prevResult; VERSION lists the versions spoken. The pod is
named by CNI_ARGS K8S_POD_NAMESPACE and K8S_POD_NAME (what the kubelet sends), and CNI_NETNS
must be the netns knet names for that pod: knet's dataplane makes it when it is missing (a
real plugin is handed a namespace the runtime made; knet makes its own to save ~20 ms per pod).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any

from knet.cni.spec import (
    CNI_VERSION,
    INVALID_CONFIG,
    INVALID_ENV,
    PLUGIN_FAILURE,
    SUPPORTED_VERSIONS,
    UNKNOWN_CONTAINER,
    CniError,
    CniRequest,
    parse_config,
    parse_request,
)
from knet.dataplane import names
from knet.dataplane.base import NETNS_DIR, Dataplane, PodNet
from knet.errors import KnetError

__all__ = ["PLUGIN_TYPE", "add_result", "invoke", "main", "pod_of"]

PLUGIN_TYPE = "knet"
Obj = dict[str, Any]
DataplaneFor = Callable[[Obj], Dataplane]


def pod_of(req: CniRequest, conf: Obj) -> tuple[str, str]:
    """(node, pod key) of a request, checked: the node from the config, the pod from
    CNI_ARGS, and CNI_NETNS (ADD, CHECK) the netns knet names for that pod."""
    node = conf.get("node")
    if not isinstance(node, str) or not node:
        raise CniError(INVALID_CONFIG, "network configuration: field 'node' (the node whose "
                       "pods this plugin wires, e.g. node-1) is missing")
    ns, name = req.args.get("K8S_POD_NAMESPACE"), req.args.get("K8S_POD_NAME")
    if not ns or not name:
        raise CniError(INVALID_ENV, "CNI_ARGS must carry K8S_POD_NAMESPACE and K8S_POD_NAME",
                       "e.g. CNI_ARGS='K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-1'")
    key = f"{ns}/{name}"
    try:
        want = f"{NETNS_DIR}/{names.pod_netns(node, key)}"
    except KnetError as exc:
        raise CniError(INVALID_CONFIG, str(exc)) from None
    if req.command != "DEL" and req.netns != want:
        raise CniError(INVALID_ENV, f"CNI_NETNS {req.netns!r}: knet's plugin wires pod {key} "
                       f"on {node} in {want}", "set CNI_NETNS to that path")
    if req.ifname != names.POD_IFNAME:
        raise CniError(INVALID_ENV, f"CNI_IFNAME {req.ifname!r}: knet's plugin names the pod's "
                       f"interface {names.POD_IFNAME}")
    return node, key


def add_result(pod: PodNet, *, prefixlen: int, mtu: int, dns: Obj | None) -> Obj:
    """The ADD result (CNI 1.0): the host-side veth, the pod's eth0, its address, route, DNS."""
    return {"cniVersion": CNI_VERSION,
            "interfaces": [{"name": pod.host_ifname},
                           {"name": names.POD_IFNAME, "mac": pod.mac, "mtu": mtu,
                            "sandbox": pod.netns_path}],
            "ips": [{"address": f"{pod.ip}/{prefixlen}", "gateway": pod.gateway,
                     "interface": 1}],
            "routes": [{"dst": "0.0.0.0/0", "gw": pod.gateway}],
            "dns": dns or {}}


async def _handle(req: CniRequest, conf: Obj, dp: Dataplane) -> Obj | None:
    node, key = pod_of(req, conf)
    try:
        if req.command == "ADD":
            pod = await dp.ensure_pod(node, key)
            info = next(n for n in await dp.list_nodes() if n.name == node)
            return add_result(pod, prefixlen=int(info.pod_cidr.split("/")[1]),
                              mtu=int(conf.get("mtu", info.mtu)), dns=conf.get("dns"))
        if req.command == "DEL":
            await dp.delete_pod(node, key)
            return None
        prev = conf.get("prevResult")
        if not isinstance(prev, dict) or not prev.get("ips"):
            raise CniError(INVALID_CONFIG, "CHECK needs prevResult (the ADD's result) in the "
                           "network configuration")
        have = {p.key: p for p in await dp.list_pods(node)}
        if key not in have:
            raise CniError(UNKNOWN_CONTAINER, f"pod {key}: no sandbox on node {node}")
        want = str(prev["ips"][0].get("address", "")).split("/")[0]
        if have[key].ip != want:
            raise CniError(PLUGIN_FAILURE, f"pod {key}: eth0 has {have[key].ip}, prevResult "
                           f"says {want}")
        return None
    except KnetError as exc:
        raise CniError(PLUGIN_FAILURE, str(exc)) from None


async def invoke(env: dict[str, str], stdin: bytes, dataplane_for: DataplaneFor
                 ) -> tuple[bytes, int]:
    """Run one invocation: (stdout bytes, exit status), exactly what the process prints."""
    version = CNI_VERSION
    try:
        req = parse_request(env)
        if req.command == "VERSION":
            out: Obj | None = {"cniVersion": CNI_VERSION, "supportedVersions": SUPPORTED_VERSIONS}
        else:
            conf = parse_config(stdin, plugin_type=PLUGIN_TYPE)
            version = conf["cniVersion"]
            out = await _handle(req, conf, dataplane_for(conf))
    except CniError as err:
        return json.dumps(err.to_json(version)).encode(), 1
    return (json.dumps(out).encode() if out is not None else b""), 0


def _netlink_dataplane(conf: Obj) -> Dataplane:
    from knet.dataplane.netlink import NetlinkDataplane  # pyroute2 is heavy: only when needed

    where = conf.get("dataplaneDir")
    if not isinstance(where, str) or not where:
        raise CniError(INVALID_CONFIG, "network configuration: field 'dataplaneDir' (knet's "
                       "dataplane record, STATE/dataplane) is missing")
    return NetlinkDataplane(where)


def main() -> int:
    """The plugin as a program: environment + stdin in, result on stdout, status out."""
    import os

    made: list[Dataplane] = []

    def dataplane_for(conf: Obj) -> Dataplane:
        made.append(_netlink_dataplane(conf))
        return made[-1]

    async def run() -> tuple[bytes, int]:
        try:
            return await invoke(dict(os.environ), sys.stdin.buffer.read(), dataplane_for)
        finally:
            for dp in made:
                await dp.close()

    out, status = asyncio.run(run())
    sys.stdout.buffer.write(out)
    sys.stdout.flush()
    return status
