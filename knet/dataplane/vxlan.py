"""`VxlanOverlay`: Flannel's vxlan backend on the real kernel, one node netns at a time.

The device: `flannel.1`, kind vxlan, VNI 1, UDP dstport 8472, local = the node's underlay
address on eth0, no learning (peers are programmed, never flooded or learnt), MTU 1450, the
node's pod subnet .0/32 as its address. Per peer: FDB VtepMAC -> public IP (`bridge fdb append`),
a permanent neighbour .0 -> VtepMAC (`ip neigh replace`), and the route `<pod /24> via <.0>
onlink dev flannel.1`, with rtm_protocol RTPROT_OVERLAY so it is told apart from host-gw's. The
device lives in the node netns, so removing the node removes it and everything on it.
set_peers makes the kernel's entries be exactly the given peers (stale ones removed).
"""

from __future__ import annotations

import logging
from socket import AF_INET
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

from knet.dataplane import nsutil
from knet.dataplane.aioiproute import KnetIPRoute
from knet.dataplane.base import NodeInfo
from knet.dataplane.netlink import _nl
from knet.dataplane.overlay import (
    VXLAN_DEVICE,
    VXLAN_MTU,
    VXLAN_PORT,
    VXLAN_VNI,
    VxlanPeer,
    vtep_mac,
)
from knet.errors import KernelObjectMissing

__all__ = ["RTPROT_OVERLAY", "VxlanOverlay"]

log = logging.getLogger(__name__)

RTPROT_OVERLAY = 78          # rtm_protocol of the overlay's routes (host-gw's are 77)
NUD_PERMANENT = 0x80
NTF_SELF = 2
RTNH_F_ONLINK = 4
AF_BRIDGE = 7


async def _all(coro: Any) -> list[Any]:
    return [m async for m in await coro]


class VxlanOverlay:
    """Implements `overlay.Overlay` with pyroute2; a socket per call (syncs are rare)."""

    def __repr__(self) -> str:
        return f"<VxlanOverlay {VXLAN_DEVICE} vni={VXLAN_VNI} port={VXLAN_PORT}>"

    async def _open(self, node: NodeInfo) -> KnetIPRoute:
        ipr = KnetIPRoute(groups=0)
        try:
            with nsutil.in_netns(node.netns):
                ipr.socket  # noqa: B018 - opens the socket inside the node netns
        except FileNotFoundError:
            raise KernelObjectMissing(f"node {node.name}: netns {node.netns} does not exist; "
                                      "ensure the node first") from None
        await ipr.setup_endpoint()
        return ipr

    async def _device(self, ipr: KnetIPRoute, node: NodeInfo) -> int:
        found = await ipr.link_lookup(ifname=VXLAN_DEVICE)
        if not found:
            raise KernelObjectMissing(f"node {node.name}: no {VXLAN_DEVICE} in netns {node.netns}; "
                                      "restart its agent (it makes the device)")
        return int(found[0])

    async def ensure_device(self, node: NodeInfo) -> None:
        ipr = await self._open(node)
        what = f"node {node.name}: vxlan {VXLAN_DEVICE} in netns {node.netns}"
        try:
            with _nl(what):
                eth0 = (await ipr.link_lookup(ifname="eth0"))[0]
                found = await ipr.link_lookup(ifname=VXLAN_DEVICE)
                if not found:
                    await ipr.link("add", ifname=VXLAN_DEVICE, kind="vxlan",
                                   vxlan_id=VXLAN_VNI, vxlan_link=eth0,
                                   vxlan_local=node.underlay_ip, vxlan_port=VXLAN_PORT,
                                   vxlan_learning=0, address=vtep_mac(node.underlay_ip),
                                   mtu=VXLAN_MTU)
                    found = await ipr.link_lookup(ifname=VXLAN_DEVICE)
                idx = found[0]
                await ipr.link("set", index=idx, state="up")
                net = node.pod_cidr.split("/")[0]
                await ipr.addr("replace", index=idx, address=net, prefixlen=32)
        finally:
            ipr.close()
        log.info("%s: %s up (vni %d, port %d, vtep %s)", node.name, VXLAN_DEVICE, VXLAN_VNI,
                 VXLAN_PORT, vtep_mac(node.underlay_ip))

    async def set_peers(self, node: NodeInfo, peers: list[VxlanPeer]) -> None:
        ipr = await self._open(node)
        try:
            idx = await self._device(ipr, node)
            await self._remove_stale(ipr, idx, peers)
            for p in peers:
                with _nl(f"node {node.name}: vxlan peer {p.name} ({p.pod_cidr} via "
                         f"{p.public_ip})"):
                    await ipr.fdb("replace", ifindex=idx, lladdr=p.vtep_mac, dst=p.public_ip,
                                  state=NUD_PERMANENT, flags=NTF_SELF)
                    await ipr.neigh("replace", ifindex=idx, dst=p.vtep_ip, lladdr=p.vtep_mac,
                                    state=NUD_PERMANENT)
                    await ipr.route("replace", dst=p.pod_cidr, gateway=p.vtep_ip, oif=idx,
                                    flags=RTNH_F_ONLINK, proto=RTPROT_OVERLAY)
        finally:
            ipr.close()
        log.info("%s: vxlan peers %s", node.name, ", ".join(p.name for p in peers) or "none")

    async def _remove_stale(self, ipr: KnetIPRoute, idx: int, peers: list[VxlanPeer]) -> None:
        routes = {p.pod_cidr for p in peers}
        neighs = {(p.vtep_ip, p.vtep_mac) for p in peers}
        fdbs = {(p.vtep_mac, p.public_ip) for p in peers}
        for r in await _all(ipr.route("dump", family=AF_INET)):
            dst = f"{r.get('dst')}/{r['dst_len']}"
            if r["proto"] == RTPROT_OVERLAY and dst not in routes:
                await _gone_ok(ipr.route("del", dst=dst, proto=RTPROT_OVERLAY))
        for n in await _all(ipr.neigh("dump", family=AF_INET)):
            key = (n.get("dst"), n.get("lladdr"))
            if n["ifindex"] == idx and n["state"] & NUD_PERMANENT and key not in neighs:
                await _gone_ok(ipr.neigh("del", ifindex=idx, dst=key[0], lladdr=key[1]))
        for f in await _all(ipr.fdb("dump")):
            key = (f.get("lladdr"), f.get("dst"))
            if f["ifindex"] == idx and key[1] and key not in fdbs:
                await _gone_ok(ipr.fdb("del", ifindex=idx, lladdr=key[0], dst=key[1]))

    async def close(self) -> None:
        return None


async def _gone_ok(coro: Any) -> None:
    try:
        await coro
    except NetlinkError as exc:
        if exc.code not in (2, 3, 19, 99):     # ENOENT, ESRCH, ENODEV, EADDRNOTAVAIL
            raise
