"""`knet agent`: what it hands its pods from its kubeconfig is the API server's address as
pods reach it and its CA, never the agent's own token (pods get ServiceAccount tokens)."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from knet.cli.commands.agent import api_access
from knet.kubelet.satoken import SA_PATH

CA = "-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n"


def test_pods_get_the_api_address_and_ca_but_not_the_agents_token(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig-node-1"
    kubeconfig.write_text(yaml.safe_dump({
        "clusters": [{"name": "knet", "cluster": {
            "server": "https://127.0.0.1:6443",
            "certificate-authority-data": base64.b64encode(CA.encode()).decode()}}],
        "users": [{"name": "system:node:node-1", "user": {"token": "node-secret"}}],
        "contexts": [{"name": "knet", "context": {"cluster": "knet",
                                                  "user": "system:node:node-1"}}],
        "current-context": "knet"}))
    access = api_access(kubeconfig, "172.18.0.1")
    assert access.server == "https://172.18.0.1:6443" and access.ca_pem == CA
    in_pod = access.kubeconfig(f"{SA_PATH}/token")
    assert "node-secret" not in in_pod and "node-secret" not in repr(vars(access))
    assert yaml.safe_load(in_pod)["users"][0]["user"] == {"tokenFile": f"{SA_PATH}/token"}
