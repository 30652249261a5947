"""The real `kubectl`, pointed at a knet cluster: the one way labs, the demo and the everyday
`knet get/apply/...` commands talk to the cluster.

Key choice: knet does not re-implement kubectl's printing; it runs the installed binary with
the cluster's kubeconfig and a discovery cache under the state dir (a fresh cache per cluster,
so a cache from an earlier cluster on the same address never lies). No kubectl -> a KnetError
saying how to install it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from knet.cluster.state import ClusterRecord
from knet.errors import KnetError

log = logging.getLogger(__name__)

INSTALL_HINT = ("kubectl is not installed: install it with 'apt-get install kubectl' (from "
                "the Kubernetes apt repository, pkgs.k8s.io) or download the binary from "
                "https://dl.k8s.io/release/stable.txt, then retry")


def kubectl_binary() -> str:
    """Path of the kubectl binary, or a KnetError with the way to install it."""
    path = os.environ.get("KNET_KUBECTL") or shutil.which("kubectl")
    if not path:
        raise KnetError(INSTALL_HINT)
    return path


@dataclass(frozen=True)
class Kube:
    """kubectl against one cluster (and, optionally, one namespace)."""
    kubeconfig: Path
    cache_dir: Path
    namespace: str | None = None

    @classmethod
    def for_state_dir(cls, state_dir: Path, *, namespace: str | None = None) -> Kube:
        rec = ClusterRecord.load(state_dir)
        if rec is None or "control" not in rec.running() or not rec.kubeconfig.exists():
            raise KnetError(f"no cluster is running in {state_dir}; start one with 'knet up' "
                            "(or pass the --state-dir it was started with)")
        return cls(rec.kubeconfig, state_dir / "kubectl-cache", namespace)

    def in_namespace(self, namespace: str | None) -> Kube:
        return Kube(self.kubeconfig, self.cache_dir, namespace)

    def argv(self, *args: str) -> list[str]:
        ns = ["--namespace", self.namespace] if self.namespace else []
        return [kubectl_binary(), "--kubeconfig", str(self.kubeconfig), "--cache-dir",
                str(self.cache_dir), *ns, *args]

    def env(self) -> dict[str, str]:
        """Environment for a host shell: plain `kubectl` finds this cluster."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig),
                "KUBECACHEDIR": str(self.cache_dir)}

    def run(self, *args: str, input: str | None = None, timeout: float = 60.0,
            check: bool = False) -> subprocess.CompletedProcess[str]:
        argv = self.argv(*args)
        log.debug("kubectl %s", " ".join(args))
        try:
            r = subprocess.run(argv, input=input, capture_output=True, text=True,
                               timeout=timeout, check=False,
                               stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise KnetError(f"kubectl {' '.join(args)}: no answer within {timeout:g}s") from exc
        if check and r.returncode != 0:
            raise KnetError(f"kubectl {' '.join(args)} failed: "
                            f"{(r.stderr or r.stdout).strip()[-400:]}")
        return r

    def get_json(self, *args: str, timeout: float = 30.0) -> Any:
        r = self.run("get", *args, "-o", "json", timeout=timeout, check=True)
        return json.loads(r.stdout)

    def apply(self, manifest: str, *, timeout: float = 60.0) -> str:
        return self.run("apply", "-f", "-", input=manifest, timeout=timeout, check=True).stdout


def is_ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in pod.get("status", {}).get("conditions") or [])


def live(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pods not being deleted."""
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]
