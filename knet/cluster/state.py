"""The state directory of a cluster (default /var/lib/knet) and the record of what `knet up`
made in it: `cluster.json` names every process (pid + start time) and what the directory held
before `up` (`found`), so `knet down` removes exactly what knet added there, whoever in knet
made it (control plane, agents, proxies, labs), and leaves what was there before.

    DIR/cluster.json          the record (written first, updated as things are made)
    DIR/kubeconfig, token     written by `knet control` once it serves; tls.crt, tls.key, ca.*
    DIR/kubeconfig-NODE       each agent's own kubeconfig (system:node:NODE), written by `knet up`
    DIR/kubeconfig-kube-proxy the kube-proxies' kubeconfig (system:kube-proxy)
    DIR/tokens.csv            the API server's static token file (admin, nodes, kube-proxy), 0600
    DIR/sa.key                the service-account token signing key, 0600
    DIR/state.db              the SQLite store (default)
    DIR/logs/*.log            one log per process
    DIR/dataplane/            the dataplane's records (namespaces, links, IPAM)
    DIR/pods/                 the runtime's pod directories
    DIR/proxy/NODE.sock       each node's kube-proxy flow records (GET /flows), dir 0700
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar

from knet.cluster.procs import ProcRecord

DEFAULT_STATE_DIR = Path(os.environ.get("KNET_STATE_DIR", "/var/lib/knet"))
RECORD = "cluster.json"


def proxy_role(node: str) -> str:
    """The record's name of a node's kube-proxy process (its agent is recorded as `node`)."""
    return f"kube-proxy-{node}"


def proxy_socket(state_dir: Path, node: str) -> Path:
    """Where node's kube-proxy serves its flow records (HTTP over a unix socket)."""
    return state_dir / "proxy" / f"{node}.sock"


@dataclass(frozen=True)
class ClusterOptions:
    """How `knet up`'s flags shape a cluster, fixed for its life: cluster.json keeps the ones
    that differ from the default, `knet up` on a recorded cluster refuses a different value
    (it needs a new cluster), and the components are started from them. A new flag is one
    field here (with its `--flag` in FLAGS) and its use where a component starts."""

    backend: str = "host-gw"         # cross-node pod traffic: host-gw | vxlan
    cni: str = "builtin"             # pod wiring: builtin | reference (CNI plugins)
    proxy_mode: str = "userspace"    # every node's kube-proxy mode: userspace | nftables
    proxy_algorithm: str = ""        # "" = the proxy's default (round-robin)
    lb_pool: str = ""                # "" = the default, control/addresses.py LB_POOL
    preserve_source_ip: bool = True  # `--no-preserve-source-ip` turns it off

    FLAGS: ClassVar[dict[str, str]] = {"backend": "--backend", "cni": "--cni", "proxy_mode": "--proxy-mode",
             "proxy_algorithm": "--proxy-algorithm", "lb_pool": "--lb-pool",
             "preserve_source_ip": "--no-preserve-source-ip"}

    @classmethod
    def asked(cls, asked: dict[str, Any]) -> ClusterOptions:
        """The defaults with what the user asked for (keys of FLAGS; None = not asked)."""
        return replace(cls(), **{k: v for k, v in asked.items() if v is not None})

    def refuse_change(self, asked: dict[str, Any], state_dir: Path) -> None:
        """Raise ValueError naming the flag if `asked` differs from these (recorded) options."""
        for name, want in asked.items():
            have = getattr(self, name)
            if want is not None and want != have:
                raise ValueError(f"the cluster in {state_dir} runs with {self._flag(name, have)}"
                                 f"; {self._flag(name, want)} needs a new one: run 'knet down' "
                                 "first")

    def _flag(self, name: str, value: Any) -> str:
        if name == "preserve_source_ip":
            return "source IPs preserved" if value else "--no-preserve-source-ip"
        return f"{self.FLAGS[name]} {value or 'default'}"

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != f.default}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ClusterOptions:
        out: dict[str, Any] = {}
        for f in fields(cls):
            if (v := raw.get(f.name)) is not None:
                out[f.name] = bool(v) if isinstance(f.default, bool) else str(v)
        return cls(**out)


@dataclass
class ClusterRecord:
    state_dir: Path
    nodes: int = 0
    store: str = ""
    server: str = ""
    procs: dict[str, ProcRecord] = field(default_factory=dict)
    made_dirs: list[str] = field(default_factory=list)
    found: list[str] | None = None   # the state dir's entries before `up` (None: it was made)
    node_map: dict[str, int] = field(default_factory=dict)  # name -> index, once nodes change
    options: ClusterOptions = field(default_factory=ClusterOptions)

    @property
    def path(self) -> Path:
        return self.state_dir / RECORD

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    def log(self, role: str) -> Path:
        return self.state_dir / "logs" / f"{role}.log"

    def node_indexes(self) -> dict[str, int]:
        """Each node's name and index (its addresses, pod CIDR and agent port follow from
        the index): node-1..node-N as `up` made them, plus `knet node add`'s, minus removed."""
        if self.node_map:
            return dict(sorted(self.node_map.items(), key=lambda kv: kv[1]))
        return {f"node-{i}": i for i in range(1, self.nodes + 1)}

    def node_names(self) -> list[str]:
        return list(self.node_indexes())

    def node_index(self, name: str) -> int:
        try:
            return self.node_indexes()[name]
        except KeyError:
            raise KeyError(f"node {name}: not in the cluster record {self.path}") from None

    def set_nodes(self, indexes: dict[str, int]) -> None:
        self.node_map = dict(indexes)
        self.nodes = len(indexes)

    def running(self) -> dict[str, ProcRecord]:
        return {role: p for role, p in self.procs.items() if p.alive()}

    def dead(self) -> dict[str, ProcRecord]:
        return {role: p for role, p in self.procs.items() if not p.alive()}

    def made_entries(self) -> list[str]:
        """Names in the state dir that knet added since `up` (the record itself last)."""
        if not self.state_dir.is_dir():
            return []
        found = set(self.found or ())
        names = sorted(p.name for p in self.state_dir.iterdir()
                       if p.name not in found and p.name != RECORD)
        return names + ([RECORD] if self.path.exists() and RECORD not in found else [])

    def save(self) -> None:
        data: dict[str, Any] = {
            "nodes": self.nodes, "store": self.store, "server": self.server,
            "procs": {r: p.to_dict() for r, p in self.procs.items()},
            "made_dirs": self.made_dirs, "found": self.found,
        }
        if self.node_map:
            data["node_map"] = self.node_map
        data.update(self.options.to_json())
        tmp = self.path.with_name(RECORD + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data, indent=2))
        os.replace(tmp, self.path)

    @classmethod
    def load(cls, state_dir: Path) -> ClusterRecord | None:
        path = state_dir / RECORD
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, OSError) as exc:
            raise ValueError(f"{path}: unreadable cluster record ({exc}); "
                             f"remove it by hand if no knet process is running") from None
        found = raw.get("found")
        return cls(state_dir=state_dir, nodes=int(raw.get("nodes", 0)),
                   store=str(raw.get("store", "")), server=str(raw.get("server", "")),
                   procs={r: ProcRecord.from_dict(p) for r, p in raw.get("procs", {}).items()},
                   made_dirs=list(raw.get("made_dirs", [])),
                   found=None if found is None else [str(n) for n in found],
                   node_map={str(k): int(v) for k, v in (raw.get("node_map") or {}).items()},
                   options=ClusterOptions.from_json(raw))
