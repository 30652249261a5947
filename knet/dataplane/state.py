"""The record of everything the dataplane made, as small JSON files in its state dir.

One file per object (host.json, nodes/<node>.json, routes/<node>.json, ipam/<node>.json:
the node's pods)
so that agents of different nodes sharing one state dir never write the same file, and a
crash loses at most the object being made (files are replaced atomically). Cleanup walks
this record: it removes what was made, never what merely looks like knet's by name.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from knet.dataplane.base import HostConfig, NodeInfo
from knet.dataplane.ipam import Ipam, write_json_atomic

__all__ = ["Records"]


class Records:
    """Read and write the record under `root` (the dataplane's own state dir)."""

    def __init__(self, state_dir: str | Path) -> None:
        self.root = Path(state_dir)

    def __repr__(self) -> str:
        return f"<Records {self.root}>"

    # host
    def host(self) -> tuple[HostConfig, bool] | None:
        """The host config and whether knet created knet0 (False: it was there before)."""
        p = self.root / "host.json"
        if not p.exists():
            return None
        data = json.loads(p.read_text())
        created = bool(data.pop("created_bridge", True))
        return HostConfig(**data), created

    def put_host(self, cfg: HostConfig, *, created_bridge: bool) -> None:
        write_json_atomic(self.root / "host.json", {**asdict(cfg), "created_bridge": created_bridge})

    def drop_host(self) -> None:
        (self.root / "host.json").unlink(missing_ok=True)

    # nodes
    def node(self, name: str) -> NodeInfo | None:
        p = self.root / "nodes" / f"{name}.json"
        return NodeInfo(**json.loads(p.read_text())) if p.exists() else None

    def nodes(self) -> list[NodeInfo]:
        d = self.root / "nodes"
        files = sorted(d.glob("*.json")) if d.exists() else []
        return [NodeInfo(**json.loads(p.read_text())) for p in files]

    def put_node(self, info: NodeInfo) -> None:
        write_json_atomic(self.root / "nodes" / f"{info.name}.json", asdict(info))

    def drop_node(self, name: str) -> None:
        (self.root / "nodes" / f"{name}.json").unlink(missing_ok=True)
        (self.root / "routes" / f"{name}.json").unlink(missing_ok=True)
        # the transparent sockets' reply path (transparent.py) went with the node's netns
        (self.root / "transparent" / f"{name}.json").unlink(missing_ok=True)

    def node_routes(self, name: str) -> dict[str, str]:
        """The host-gw routes last asked for on node `name` (dst -> via)."""
        p = self.root / "routes" / f"{name}.json"
        return dict(json.loads(p.read_text())) if p.exists() else {}

    def put_node_routes(self, name: str, routes: dict[str, str]) -> None:
        write_json_atomic(self.root / "routes" / f"{name}.json", routes)

    def ipam(self, node: str, cidr: str) -> Ipam:
        return Ipam(node=node, cidr=cidr, path=self.root / "ipam" / f"{node}.json")
