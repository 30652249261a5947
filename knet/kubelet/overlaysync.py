"""The agent's half of the VXLAN overlay (`knet up --backend vxlan`), in flanneld's role.

On start: make the node's flannel.1 and publish its VTEP on the Node (Flannel's annotations).
On every Node event: read every other Node's annotations, program the usable peers (FDB,
neighbour, route), and drop host-gw routes (the overlay replaces them). A malformed peer gets
one Warning Event on its Node naming the problem (again only if the problem changes) and is
skipped; the other peers are programmed as usual. The node's own annotations are checked the
same way: `network()` is its NetworkUnavailable condition (True with reason
OverlayAnnotationInvalid while they are malformed, False with KnetOverlayUp otherwise), as
flannel reports it; the agent posts it with the node's status.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from knet.dataplane.base import Dataplane, NodeInfo
from knet.dataplane.overlay import Overlay, PeerProblem, node_annotations, parse_peer, parse_peers

__all__ = ["EVENT_REASON", "OWN_REASON", "UP_REASON", "OverlaySync"]

log = logging.getLogger(__name__)
Obj = dict[str, Any]
EVENT_REASON = "OverlayPeerInvalid"
OWN_REASON, UP_REASON = "OverlayAnnotationInvalid", "KnetOverlayUp"
Report = Callable[[Obj, str, str, str], Awaitable[None]]   # (object, type, reason, message)


class OverlaySync:
    """Keeps one node's overlay equal to what the Node objects say."""

    def __init__(self, *, overlay: Overlay, dataplane: Dataplane, report: Report) -> None:
        self.overlay = overlay
        self.dataplane = dataplane
        self.report = report
        self.info: NodeInfo | None = None
        self._reported: dict[str, str] = {}        # peer node -> problem already reported
        self._lock = asyncio.Lock()
        self.own_problem: str | None = None        # this node's own annotations, if malformed

    def __repr__(self) -> str:
        return f"<OverlaySync {self.info.name if self.info else '?'} {self.overlay!r}>"

    async def start(self, info: NodeInfo) -> dict[str, str]:
        """Make the device; return the annotations to publish on this node's Node."""
        await self.overlay.ensure_device(info)
        self.info = info
        return node_annotations(info)

    def network(self) -> tuple[bool, str, str]:
        """This node's NetworkUnavailable condition: (unavailable, reason, message)."""
        if self.own_problem is not None:
            return True, OWN_REASON, self.own_problem
        return False, UP_REASON, "the VXLAN overlay (flannel.1) is up on this node"

    async def sync(self, nodes: Callable[[], list[Obj]]) -> list[PeerProblem]:
        """Program the peers the Nodes (read when the previous sync is done) describe;
        returns the problems found (each reported once)."""
        async with self._lock:
            return await self._sync(nodes())

    async def _sync(self, nodes: list[Obj]) -> list[PeerProblem]:
        if self.info is None:
            return []
        peers, problems = parse_peers(nodes, self_name=self.info.name)
        me = next((n for n in nodes if (n.get("metadata") or {}).get("name") == self.info.name),
                  None)
        own = parse_peer(me) if me is not None else None
        self.own_problem = own.problem if isinstance(own, PeerProblem) else None
        await self.dataplane.ensure_node_routes(self.info.name, [])   # no host-gw routes
        await self.overlay.set_peers(self.info, peers)
        by_name = {(n.get("metadata") or {}).get("name"): n for n in nodes}
        now = {p.node: p.problem for p in problems}
        for p in problems:
            if self._reported.get(p.node) == p.problem:
                continue
            log.warning("%s: vxlan peer skipped: %s", self.info.name, p.problem)
            node = by_name.get(p.node)
            if node is not None:
                await self.report(node, "Warning", EVENT_REASON, p.problem)
        self._reported = now
        return problems
