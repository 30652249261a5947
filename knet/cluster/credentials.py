"""Each node component's own credential instead of the admin's: every agent is
`system:node:NODE` (group system:nodes), every kube-proxy `system:kube-proxy`.

`knet up` adds one token per node to the API server's token file (DIR/tokens.csv, read by
`knet control` when it starts; the control plane adds the kube-proxy's) before starting the
control plane, then writes each component a kubeconfig of its own (DIR/kubeconfig-NODE,
DIR/kubeconfig-kube-proxy, 0600): the admin kubeconfig's server and CA with that user's token.
The admin kubeconfig stays the user's.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml  # type: ignore[import-untyped]

from control.auth.tokenfile import KUBE_PROXY, TOKENS_FILE, ensure_tokens, node_user, read_tokens
from control.auth.types import UserInfo
from knet.errors import KnetError

__all__ = ["ensure_node_tokens", "node_kubeconfig", "node_kubeconfig_path", "proxy_kubeconfig"]


def ensure_node_tokens(state_dir: Path, nodes: list[str]) -> None:
    ensure_tokens(state_dir / TOKENS_FILE, [node_user(n) for n in nodes])


def node_kubeconfig_path(state_dir: Path, node: str) -> Path:
    return state_dir / f"kubeconfig-{node}"


def node_kubeconfig(state_dir: Path, node: str) -> Path:
    """Write (again) DIR/kubeconfig-NODE from the admin kubeconfig and the node's token."""
    return _kubeconfig_for(state_dir, node_user(node), node_kubeconfig_path(state_dir, node))


def proxy_kubeconfig(state_dir: Path) -> Path:
    """Write (again) DIR/kubeconfig-kube-proxy: the kube-proxies' own identity."""
    return _kubeconfig_for(state_dir, KUBE_PROXY, state_dir / "kubeconfig-kube-proxy")


def _kubeconfig_for(state_dir: Path, who: UserInfo, path: Path) -> Path:
    user = who.name
    token = next((t for t, u in read_tokens(state_dir / TOKENS_FILE).items()
                  if u.name == user), None)
    if token is None:
        raise KnetError(f"no token for {user} in {state_dir / TOKENS_FILE}; "
                        "restart the cluster with 'knet down' and 'knet up'")
    doc = yaml.safe_load((state_dir / "kubeconfig").read_text())
    doc["users"] = [{"name": user, "user": {"token": token}}]
    for ctx in doc.get("contexts") or []:
        ctx["context"]["user"] = user
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(yaml.safe_dump(doc, sort_keys=False))
    os.replace(tmp, path)
    return path
