"""The state directory of a cluster (default /var/lib/knet) and the record of what `knet up`
made in it: `cluster.json` names every process (pid + start time) and every file or directory
knet created, so `knet down` removes exactly those.

    DIR/cluster.json      the record (written first, updated as things are made)
    DIR/kubeconfig        written by `knet control` once it serves
    DIR/kubeconfig-NODE   each agent's own kubeconfig (system:node:NODE), written by `knet up`
    DIR/tokens.csv        the API server's static token file (admin, nodes, kube-proxy), 0600
    DIR/sa.key            the service-account token signing key, 0600
    DIR/state.db          the SQLite store (default)
    DIR/logs/*.log        one log per process
    DIR/dataplane/        the dataplane's records (namespaces, links, IPAM)
    DIR/pods/             the runtime's pod directories
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from knet.cluster.procs import ProcRecord

DEFAULT_STATE_DIR = Path(os.environ.get("KNET_STATE_DIR", "/var/lib/knet"))


@dataclass
class ClusterRecord:
    state_dir: Path
    nodes: int = 0
    store: str = ""
    server: str = ""
    procs: dict[str, ProcRecord] = field(default_factory=dict)
    made_dirs: list[str] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.state_dir / "cluster.json"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    def log(self, role: str) -> Path:
        return self.state_dir / "logs" / f"{role}.log"

    def running(self) -> dict[str, ProcRecord]:
        return {role: p for role, p in self.procs.items() if p.alive()}

    def save(self) -> None:
        data: dict[str, Any] = {
            "nodes": self.nodes, "store": self.store, "server": self.server,
            "procs": {r: p.to_dict() for r, p in self.procs.items()},
            "made_dirs": self.made_dirs,
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, self.path)

    @classmethod
    def load(cls, state_dir: Path) -> ClusterRecord | None:
        path = state_dir / "cluster.json"
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, OSError) as exc:
            raise ValueError(f"{path}: unreadable cluster record ({exc}); "
                             f"remove it by hand if no knet process is running") from None
        return cls(state_dir=state_dir, nodes=int(raw.get("nodes", 0)),
                   store=str(raw.get("store", "")), server=str(raw.get("server", "")),
                   procs={r: ProcRecord.from_dict(p) for r, p in raw.get("procs", {}).items()},
                   made_dirs=list(raw.get("made_dirs", [])))
