"""The way back for the proxy's transparent sockets: replies to a client's address reach the
proxy in the node's netns (source IP preservation; the decision is knet/proxy/source.py).

The proxy dials a backend from a socket bound with IP_TRANSPARENT to the client pod's
address; the backend answers that address. In the node's netns (the TPROXY recipe):

- nftables table `ip knet_transparent`, prerouting (mangle): a packet that belongs to a
  transparent socket (`socket transparent 1`) gets the mark bit MARK (packets to the Service
  CIDR skip the lookup: they are requests, never replies);
- `ip rule fwmark MARK/MARK lookup TABLE` with `local 0.0.0.0/0 dev lo` in TABLE: a marked
  packet is delivered locally, to that socket, instead of forwarded to the pod;
- table `bridge knet_transparent`, prerouting after br_netfilter: a same-node backend's
  reply is bridged straight to the client pod (same subnet), so a marked frame entering
  cni0 is addressed to the bridge itself (`meta pkttype set host`, `ether daddr set` cni0's
  MAC) and goes up to IP, where the rule above delivers it. That needs br_netfilter's
  bridge-nf-call-iptables (the ip hook sees bridged packets): set to 1 in the node netns.

Cross-node replies come back by the host-gw (or VXLAN) route to the client's node and meet
the first rule on its eth0. Each node's pieces are recorded (STATE/transparent/NODE.json)
before they are made and removed by that record (`remove`, `cleanup`, or with the netns).
Both tables are knet's own: nothing else in the ruleset is touched. nft through nft.py (one
transaction), rules and routes through pyroute2 (`NetlinkPolicyRoutes`).
"""

from __future__ import annotations

import errno
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from knet.dataplane import nsutil
from knet.dataplane.ipam import write_json_atomic
from knet.dataplane.nft import Command, Nft

__all__ = ["MARK", "NFT_TABLE", "ROUTE_TABLE", "RULE_PRIORITY", "NetlinkPolicyRoutes",
           "PolicyRoutes", "Transparent", "TransparentRecord", "nft_commands"]

log = logging.getLogger(__name__)

MARK = 0x02000000      # one bit, clear of kube-proxy's 0x4000/0x8000 and Calico's high bits
ROUTE_TABLE = 19278    # "KN"
RULE_PRIORITY = 90     # before the main table (32766)
NFT_TABLE = "knet_transparent"
BRIDGE = "cni0"


@dataclass(frozen=True)
class TransparentRecord:
    """What `ensure` made in one node's netns (its record, written before the kernel)."""
    node: str
    netns: str
    bridge: str = BRIDGE
    mark: int = MARK
    table: int = ROUTE_TABLE
    priority: int = RULE_PRIORITY
    skip: str = ""         # packets to here never belong to one (the Service CIDR): no lookup


def _mark_is_set(mark: int) -> dict[str, Any]:
    return {"match": {"op": "==", "left": {"&": [{"meta": {"key": "mark"}}, mark]},
                      "right": mark}}


def nft_commands(rec: TransparentRecord, bridge_mac: str) -> list[Command]:
    """One transaction that (re)makes both tables from scratch: idempotent."""
    out: list[Command] = []
    for family in ("ip", "bridge"):
        table = {"family": family, "name": NFT_TABLE}
        out += [{"add": {"table": table}}, {"delete": {"table": table}},
                {"add": {"table": table}}]
    ip = {"family": "ip", "table": NFT_TABLE, "chain": "prerouting"}
    out += [
        {"add": {"chain": {"family": "ip", "table": NFT_TABLE, "name": "prerouting",
                           "type": "filter", "hook": "prerouting", "prio": -150,
                           "policy": "accept"}}},
        {"add": {"rule": {**ip, "expr": [
            *([{"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                          "right": {"prefix": {"addr": rec.skip.split("/")[0],
                                               "len": int(rec.skip.split("/")[1])}}}}]
              if rec.skip else []),
            {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}},
                       "right": {"set": ["tcp", "udp"]}}},
            {"match": {"op": "==", "left": {"socket": {"key": "transparent"}}, "right": 1}},
            {"mangle": {"key": {"meta": {"key": "mark"}},
                        "value": {"|": [{"meta": {"key": "mark"}}, rec.mark]}}}]}}},
    ]
    br = {"family": "bridge", "table": NFT_TABLE, "chain": "prerouting"}
    out += [
        {"add": {"chain": {"family": "bridge", "table": NFT_TABLE, "name": "prerouting",
                           "type": "filter", "hook": "prerouting", "prio": 100,
                           "policy": "accept"}}},
        {"add": {"rule": {**br, "expr": [
            _mark_is_set(rec.mark),   # (`meta ibrname` is not in this kernel: the mark says)
            {"mangle": {"key": {"meta": {"key": "pkttype"}}, "value": "host"}},
            {"mangle": {"key": {"payload": {"protocol": "ether", "field": "daddr"}},
                        "value": bridge_mac}}]}}},
    ]
    return out


class PolicyRoutes(Protocol):
    """The netlink side: the fwmark rule, the local route, the bridge's MAC, br_netfilter."""

    async def set_rule(self, netns: str, rec: TransparentRecord, *, present: bool) -> None: ...
    async def bridge_mac(self, netns: str, bridge: str) -> str | None: ...
    def bridge_nf(self, netns: str) -> bool: ...


class Transparent:
    """Ensures and removes the reply path of transparent sockets in node netns, by record."""

    def __init__(self, state_dir: str | Path, *, nft: Nft, routes: PolicyRoutes,
                 netns_exists: Callable[[str], bool] = nsutil.is_netns) -> None:
        self.root = Path(state_dir) / "transparent"
        self.nft, self.routes, self.netns_exists = nft, routes, netns_exists

    def __repr__(self) -> str:
        return f"<Transparent {self.root}>"

    def _path(self, node: str) -> Path:
        return self.root / f"{node}.json"

    def recorded(self) -> list[TransparentRecord]:
        files = sorted(self.root.glob("*.json")) if self.root.exists() else []
        return [TransparentRecord(**json.loads(p.read_text())) for p in files]

    async def ensure(self, node: str, netns: str, *, bridge: str = BRIDGE,
                     skip: str = "") -> TransparentRecord:
        """Make (again) node's pieces; OSError naming the node when the kernel says no.
        `skip`: a CIDR whose packets need no socket lookup (the Service CIDR: a client's
        packets to a ClusterIP are never a reply to a transparent socket)."""
        rec = TransparentRecord(node=node, netns=netns, bridge=bridge, skip=skip)
        mac = await self.routes.bridge_mac(netns, bridge)
        if mac is None:
            raise OSError(f"node {node}: bridge {bridge} is missing in netns {netns}; the "
                          "source IP cannot be preserved until the node is set up ('knet up')")
        if not self.routes.bridge_nf(netns):
            log.warning("%s: br_netfilter is not loaded: same-node backends' replies cannot "
                        "reach the proxy (modprobe br_netfilter)", node)
        write_json_atomic(self._path(node), asdict(rec))
        await self.nft.apply(netns, nft_commands(rec, mac))
        await self.routes.set_rule(netns, rec, present=True)
        log.info("%s: transparent sockets' replies steered to the proxy (mark %#x, table %d)",
                 node, rec.mark, rec.table)
        return rec

    async def remove(self, node: str) -> None:
        """Remove what the record of `node` says was made; a no-op without a record."""
        path = self._path(node)
        if not path.exists():
            return
        rec = TransparentRecord(**json.loads(path.read_text()))
        if self.netns_exists(rec.netns):
            await self.routes.set_rule(rec.netns, rec, present=False)
            for family in ("ip", "bridge"):
                await self.nft.delete_table(rec.netns, family, NFT_TABLE)
        path.unlink(missing_ok=True)
        log.info("%s: transparent sockets' reply path removed", node)

    async def cleanup(self) -> None:
        for rec in self.recorded():
            await self.remove(rec.node)


class NetlinkPolicyRoutes:
    """PolicyRoutes on the real kernel (pyroute2, a socket opened inside the netns)."""

    async def _open(self, netns: str) -> Any:
        from knet.dataplane.aioiproute import KnetIPRoute
        ipr = KnetIPRoute(groups=0)
        with nsutil.in_netns(netns):
            ipr.socket  # noqa: B018 - opens the socket inside netns
        await ipr.setup_endpoint()
        return ipr

    async def set_rule(self, netns: str, rec: TransparentRecord, *, present: bool) -> None:
        from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]
        ipr = await self._open(netns)
        rule = {"table": rec.table, "priority": rec.priority, "fwmark": rec.mark,
                "fwmask": rec.mark}
        route = {"dst": "0.0.0.0/0", "type": "local", "scope": "host", "table": rec.table,
                 "oif": 1}   # lo is 1 in every netns
        verb, ok = (("add", "replace"), (errno.EEXIST,)) if present else (
            ("del", "del"), (errno.ENOENT, errno.ESRCH))
        try:
            for method, kw, how in ((ipr.rule, rule, verb[0]), (ipr.route, route, verb[1])):
                try:
                    await method(how, **kw)
                except NetlinkError as exc:
                    if exc.code not in ok:
                        raise OSError(f"netns {netns}: ip {method.__name__} {how} for the "
                                      f"transparent sockets failed: {exc}") from None
        finally:
            ipr.close()

    async def bridge_mac(self, netns: str, bridge: str) -> str | None:
        ipr = await self._open(netns)
        try:
            async for link in await ipr.link("dump"):
                if link.get_attr("IFLA_IFNAME") == bridge:
                    return str(link.get_attr("IFLA_ADDRESS"))
            return None
        finally:
            ipr.close()

    def bridge_nf(self, netns: str) -> bool:
        # /proc/sys/net is the netns of the opening thread: a sysctl write, not disk I/O
        try:
            with nsutil.in_netns(netns), open(
                    "/proc/sys/net/bridge/bridge-nf-call-iptables", "r+") as f:
                if f.read().strip() != "1":
                    f.seek(0)
                    f.write("1\n")
        except OSError:
            return False
        return True
