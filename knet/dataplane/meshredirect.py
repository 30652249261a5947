"""The mesh's in-pod redirection, programmed in a pod's netns: one nftables table whose
output-hook NAT chain redirects the pod's TCP to ClusterIPs and to other pods' IPs to the
node proxy's outbound port (15001) in the same netns, as Istio ambient's in-pod rules steer a
pod's traffic to ztunnel's sockets. The proxy's own sockets in the pod's netns carry the mark
0x539 (Istio's ztunnel mark, `PROXY_MARK`) and are never redirected, so its dials to pod IPs
(HBONE on 15008, plaintext to pods outside the mesh, the local app) leave as they are.
Applied with `nft -f -` under `nsenter --net` in one transaction (`table; delete table;
table {...}`: idempotent), removed by deleting the table.
"""

from __future__ import annotations

import asyncio

from knet.dataplane import nsutil

__all__ = ["OUTBOUND_PORT", "PROXY_MARK", "NftRedirect"]

OUTBOUND_PORT = 15001
PROXY_MARK = 0x539
TABLE = "knet_mesh"


class NftRedirect:
    """The redirect as one nftables table in the pod's netns (`nft -f -` under nsenter)."""

    def __init__(self, service_cidr: str, port: int = OUTBOUND_PORT, *, hbone: int = 15008,
                 plain: int = 15006, pod_cidr: str = "") -> None:
        self.service_cidr, self.port, self.hbone, self.plain = service_cidr, port, hbone, plain
        self.pod_cidr = pod_cidr

    def program(self, exempt: str = "") -> str:
        """Outbound: TCP to ClusterIPs, and to pod IPs (but the pod's own, `exempt`'s and
        port 15008) -> the proxy's 15001, unless the proxy made it (PROXY_MARK). Inbound: TCP
        from anyone but `exempt` (the node's own address: kubelet probes, the node-local
        proxy) to any port but 15008 (mTLS) -> the proxy's 15006, where PeerAuthentication
        is enforced."""
        skip = f"ip saddr {exempt} return\n    " if exempt else ""
        pods = ""
        if self.pod_cidr:
            to_node = f"    ip daddr {exempt} return\n" if exempt else ""
            pods = (f"{to_node}    fib daddr type local return\n"
                    f"    ip daddr {self.pod_cidr} tcp dport != {self.hbone} "
                    f"redirect to :{self.port}\n")
        return (f"table ip {TABLE}\ndelete table ip {TABLE}\n"
                f"table ip {TABLE} {{\n  chain output {{\n"
                "    type nat hook output priority -100; policy accept;\n"
                f"    meta mark {PROXY_MARK:#x} return\n"
                f"    ip daddr {self.service_cidr} meta l4proto tcp redirect to :{self.port}\n"
                f"{pods}"
                "  }\n  chain prerouting {\n"
                "    type nat hook prerouting priority -100; policy accept;\n"
                f"    {skip}tcp dport != {{ {self.hbone}, {self.plain} }} "
                f"redirect to :{self.plain}\n"
                "  }\n}\n")

    async def _nft(self, netns: str, program: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            "nsenter", f"--net={nsutil.netns_path(netns)}", "nft", "-f", "-",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(program.encode()), 10)
        if proc.returncode:
            raise OSError(f"mesh: nft in netns {netns} failed: {err.decode().strip()}")

    async def install(self, netns: str, *, exempt: str = "") -> None:
        await self._nft(netns, self.program(exempt))

    async def remove(self, netns: str) -> None:
        await self._nft(netns, f"table ip {TABLE}\ndelete table ip {TABLE}\n")
