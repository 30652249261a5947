"""Turning source IP preservation on (or off) for one node's proxy, as `knet proxy` starts.

On: the node's reply path for transparent sockets is ensured through the dataplane
(knet/dataplane/transparent.py, recorded) and a `SourcePolicy` for the node is returned for
`ProxyContext.source`. Off (`--no-preserve-source-ip`), or when it cannot work (no
IP_TRANSPARENT, the node not set up): what an earlier run made is removed and None is
returned — every backend then sees the node's address, as before. A failure never stops the
proxy: it is logged with the way out and the proxy masquerades.
"""

from __future__ import annotations

import logging
from pathlib import Path

from knet.proxy.sockets import SocketMaker
from knet.proxy.source import SourcePolicy

__all__ = ["setup_source_ip"]

log = logging.getLogger(__name__)


def _probe(netns: str) -> str:
    sockets = SocketMaker(netns)
    try:
        return sockets.can_bind_transparent()
    finally:
        sockets.close()


async def setup_source_ip(*, node: str, netns: str, state_dir: Path,
                          enabled: bool) -> SourcePolicy | None:
    """The node's SourcePolicy with its reply path in place, or None (masquerade).
    `state_dir` is the dataplane's (STATE/dataplane): its records name the node's CIDRs."""
    from knet.dataplane.nft import LibNft
    from knet.dataplane.state import Records
    from knet.dataplane.transparent import NetlinkPolicyRoutes, Transparent

    nft = LibNft()
    transparent = Transparent(state_dir, nft=nft, routes=NetlinkPolicyRoutes())
    try:
        if not enabled:
            await transparent.remove(node)
            log.info("%s: source IP preservation off: backends see the node's address", node)
            return None
        records = Records(state_dir)
        info, host = records.node(node), records.host()
        why = ("the node is not in the dataplane's records" if info is None or host is None
               else _probe(netns))
        if why or info is None or host is None:
            log.error("%s: source IP not preserved (%s); backends see the node's address "
                      "('knet up' sets the node up; run the proxy as root)", node, why)
            await transparent.remove(node)
            return None
        await transparent.ensure(node, netns, skip=host[0].service_cidr)
        return SourcePolicy(info.pod_cidr, cluster_pods=host[0].pod_cidr,
                            node_ips={info.underlay_ip, info.gateway})
    except OSError as exc:
        log.error("%s: source IP not preserved: %s; backends see the node's address", node, exc)
        return None
    finally:
        nft.close()
