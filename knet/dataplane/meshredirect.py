"""The mesh's in-pod redirection, programmed in a pod's netns: one nftables table whose
output-hook NAT chain redirects the pod's TCP to ClusterIPs and to other pods' IPs to the
node proxy's outbound port (15001) in the same netns, as Istio ambient's in-pod rules steer a
pod's traffic to ztunnel's sockets. The proxy's own sockets in the pod's netns carry the mark
0x539 (Istio's ztunnel mark, `PROXY_MARK`) and are never redirected, so its dials to pod IPs
(HBONE on 15008, plaintext to pods outside the mesh, the local app) leave as they are.

Applied through knet/dataplane/nft.py (libnftables' JSON API, no `nft` process) as one
transaction that adds, deletes and re-adds the table (idempotent: a re-install replaces it);
removed by deleting the table. In nft's words, for a pod whose node address is 10.244.1.1:

    table ip knet_mesh {
      chain output { type nat hook output priority -100; policy accept;
        meta mark 0x539 return
        ip daddr 10.96.0.0/12 meta l4proto tcp redirect to :15001
        ip daddr 10.244.1.1 return
        fib daddr type local return
        ip daddr 10.244.0.0/16 tcp dport != 15008 redirect to :15001 }
      chain prerouting { type nat hook prerouting priority -100; policy accept;
        ip saddr 10.244.1.1 return
        tcp dport != { 15006, 15008 } redirect to :15006 } }
"""

from __future__ import annotations

import ipaddress
from typing import Any

from knet.dataplane.nft import Nft

__all__ = ["OUTBOUND_PORT", "PROXY_MARK", "TABLE", "NftRedirect"]

OUTBOUND_PORT = 15001
PROXY_MARK = 0x539
FAMILY, TABLE = "ip", "knet_mesh"
Rule = list[dict[str, Any]]


def _is(left: dict[str, Any], right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _addr(cidr: str) -> Any:
    net = ipaddress.ip_network(cidr, strict=False)
    if net.prefixlen == 32:
        return str(net.network_address)
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def _ip(field: str, cidr: str) -> dict[str, Any]:
    return _is({"payload": {"protocol": "ip", "field": field}}, _addr(cidr))


def _redirect(port: int) -> dict[str, Any]:
    return {"redirect": {"port": port}}


RETURN: dict[str, Any] = {"return": None}
TCP_DPORT: dict[str, Any] = {"payload": {"protocol": "tcp", "field": "dport"}}


class NftRedirect:
    """The redirect as one nftables table in the pod's netns."""

    def __init__(self, service_cidr: str, port: int = OUTBOUND_PORT, *, hbone: int = 15008,
                 plain: int = 15006, pod_cidr: str = "", nft: Nft | None = None) -> None:
        self.service_cidr, self.port, self.hbone, self.plain = service_cidr, port, hbone, plain
        self.pod_cidr = pod_cidr
        self._nft, self._owned = nft, nft is None

    def __repr__(self) -> str:
        return f"<NftRedirect {self.service_cidr} {self.pod_cidr or '-'} -> :{self.port}>"

    def rules(self, exempt: str = "") -> dict[str, list[Rule]]:
        """Each chain's rules. Outbound: TCP to ClusterIPs, and to pod IPs (but the pod's own,
        `exempt`'s and port 15008) -> the proxy's 15001, unless the proxy made it
        (PROXY_MARK). Inbound: TCP from anyone but `exempt` (the node's own address: kubelet
        probes, the node-local proxy) to any port but 15008 (mTLS) -> the proxy's 15006,
        where PeerAuthentication is enforced."""
        output: list[Rule] = [
            [_is({"meta": {"key": "mark"}}, PROXY_MARK), RETURN],
            [_ip("daddr", self.service_cidr), _is({"meta": {"key": "l4proto"}}, "tcp"),
             _redirect(self.port)]]
        if self.pod_cidr:
            if exempt:
                output.append([_ip("daddr", exempt), RETURN])
            output += [
                [_is({"fib": {"result": "type", "flags": ["daddr"]}}, "local"), RETURN],
                [_ip("daddr", self.pod_cidr), _is(TCP_DPORT, self.hbone, "!="),
                 _redirect(self.port)]]
        prerouting: list[Rule] = [[_ip("saddr", exempt), RETURN]] if exempt else []
        prerouting.append([_is(TCP_DPORT, {"set": sorted((self.hbone, self.plain))}, "!="),
                           _redirect(self.plain)])
        return {"output": output, "prerouting": prerouting}

    def program(self, exempt: str = "") -> list[dict[str, Any]]:
        """The install transaction: the table added, deleted and made anew with its rules."""
        table = {"family": FAMILY, "name": TABLE}
        cmds: list[dict[str, Any]] = [{"add": {"table": table}}, {"delete": {"table": table}},
                                      {"add": {"table": table}}]
        for chain, rules in self.rules(exempt).items():
            cmds.append({"add": {"chain": {"family": FAMILY, "table": TABLE, "name": chain,
                                           "type": "nat", "hook": chain, "prio": -100,
                                           "policy": "accept"}}})
            cmds += [{"add": {"rule": {"family": FAMILY, "table": TABLE, "chain": chain,
                                       "expr": expr}}} for expr in rules]
        return cmds

    def nft(self) -> Nft:
        if self._nft is None:
            from knet.dataplane.nft import LibNft  # libnftables: loaded when first needed
            self._nft = LibNft()
        return self._nft

    async def install(self, netns: str, *, exempt: str = "") -> None:
        await self.nft().apply(netns, self.program(exempt))

    async def remove(self, netns: str) -> None:
        await self.nft().delete_table(netns, FAMILY, TABLE)

    def close(self) -> None:
        if self._owned and self._nft is not None:
            close = getattr(self._nft, "close", None)
            if close is not None:
                close()
            self._nft = None
