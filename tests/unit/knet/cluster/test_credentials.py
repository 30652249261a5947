"""Each agent's own kubeconfig: the admin kubeconfig's server and CA with the node's token
from the token file, 0600; the admin's kubeconfig stays as it was."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml

from control.auth.tokenfile import TOKENS_FILE, read_tokens
from knet.cluster.credentials import ensure_node_tokens, node_kubeconfig
from knet.errors import KnetError

ADMIN = {"apiVersion": "v1", "kind": "Config",
         "clusters": [{"name": "knet", "cluster": {"server": "https://172.18.0.1:6443",
                                                   "certificate-authority-data": "Q0E="}}],
         "users": [{"name": "knet-admin", "user": {"token": "admin-secret"}}],
         "contexts": [{"name": "knet", "context": {"cluster": "knet", "user": "knet-admin"}}],
         "current-context": "knet"}


def test_node_kubeconfig_carries_the_nodes_own_token(tmp_path: Path) -> None:
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(ADMIN))
    ensure_node_tokens(tmp_path, ["node-1", "node-2"])
    path = node_kubeconfig(tmp_path, "node-1")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    doc = yaml.safe_load(path.read_text())
    token = doc["users"][0]["user"]["token"]
    assert token != "admin-secret"
    assert read_tokens(tmp_path / TOKENS_FILE)[token].name == "system:node:node-1"
    assert doc["contexts"][0]["context"]["user"] == "system:node:node-1"
    assert doc["clusters"] == ADMIN["clusters"]
    assert yaml.safe_load((tmp_path / "kubeconfig").read_text()) == ADMIN
    with pytest.raises(KnetError, match="no token for system:node:node-3"):
        node_kubeconfig(tmp_path, "node-3")
