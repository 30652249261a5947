"""Projected volumes, the kubelet's way: the ServiceAccount token a pod runs with.

Admission gives each pod a `kube-api-access-XXXXX` projected volume; for every
`serviceAccountToken` source the kubelet asks the API server for a token bound to the pod
(TokenRequest on serviceaccounts/NAME/token, audience and expirationSeconds from the source)
and writes it, with the cluster's CA (`ca.crt`, from the kubeconfig the agent trusts) and the
namespace, into the pod's volume directory, files 0644. Tokens are refreshed once 80% of
their lifetime has passed (the kubelet's rule), each file replaced atomically.
knet adds a `kubeconfig` next to them (server, CA, `tokenFile` pointing at the token) so
programs in the pod need no in-cluster discovery. The agent's own credential never enters
a pod.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from control.clientbase import Client
from control.errors import ApiError
from knet.errors import KnetError

__all__ = ["SA_PATH", "ApiAccess", "ProjectedVolumes"]

log = logging.getLogger(__name__)

Obj = dict[str, Any]
SA_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
REFRESH_FRACTION = 0.8
TOKEN_RETRY = 10.0             # seconds before another try at a refresh that failed
MAX_AGE = 24 * 3600.0          # the kubelet refreshes tokens older than a day, whatever their TTL
Lookup = Callable[[str, str, str], Awaitable[Obj | None]]


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


class ApiAccess:
    """What pods get to reach the API server: its URL as pods see it and its CA."""

    def __init__(self, server: str, ca_pem: str) -> None:
        self.server = server
        self.ca_pem = ca_pem

    def kubeconfig(self, token_file: str) -> str:
        import base64
        cluster = {"server": self.server,
                   "certificate-authority-data": base64.b64encode(self.ca_pem.encode()).decode()}
        doc = {"apiVersion": "v1", "kind": "Config",
               "clusters": [{"name": "in-cluster", "cluster": cluster}],
               "users": [{"name": "serviceaccount", "user": {"tokenFile": token_file}}],
               "contexts": [{"name": "in-cluster", "context": {
                   "cluster": "in-cluster", "user": "serviceaccount"}}],
               "current-context": "in-cluster"}
        return str(yaml.safe_dump(doc, sort_keys=False))


class ProjectedVolumes:
    """The projected volumes of one pod: `write()` fills them, `refresh_in()` says when."""

    def __init__(self, pod: Obj, pod_dir: Path, *, client: Client, lookup: Lookup,
                 access: ApiAccess | None, clock: Callable[[], float]) -> None:
        self.pod = pod
        self.pod_dir = pod_dir
        self.client = client
        self.lookup = lookup
        self.access = access
        self.clock = clock
        self.refresh_at: float | None = None

    def __repr__(self) -> str:
        md = self.pod["metadata"]
        return f"<ProjectedVolumes {md.get('namespace')}/{md.get('name')}>"

    @property
    def volumes(self) -> list[Obj]:
        return [v for v in self.pod.get("spec", {}).get("volumes") or [] if "projected" in v]

    def refresh_in(self) -> float | None:
        return None if self.refresh_at is None else max(0.0, self.refresh_at - self.clock())

    async def keep_fresh(self, *, on_error: Callable[[str], None],
                         sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """Rewrite the tokens whenever they are due (after `write`), until cancelled; a
        failed refresh is reported and tried again after TOKEN_RETRY seconds."""
        while (delay := self.refresh_in()) is not None:
            await sleep(delay)
            try:
                await self.write(tokens_only=True)
            except KnetError as exc:
                on_error(str(exc))
                self.refresh_at = self.clock() + TOKEN_RETRY

    async def write(self, *, tokens_only: bool = False) -> None:
        """Fill every projected volume; raises KnetError (retry later) if a part fails."""
        self.refresh_at = None
        for vol in self.volumes:
            path = self.pod_dir / "volumes" / vol["name"]
            mode = int(vol["projected"].get("defaultMode", 0o644))
            for source in vol["projected"].get("sources") or []:
                if "serviceAccountToken" in source:
                    await self._token(path, source["serviceAccountToken"], mode)
                elif not tokens_only:
                    await self._other(path, source, mode)

    async def _token(self, path: Path, src: Obj, mode: int) -> None:
        md, spec = self.pod["metadata"], self.pod.get("spec", {})
        account = spec.get("serviceAccountName") or "default"
        request: Obj = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                        "metadata": {"name": account, "namespace": md["namespace"]},
                        "spec": {"expirationSeconds": int(src.get("expirationSeconds", 3600)),
                                 "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                                                    "name": md["name"], "uid": md.get("uid")}}}
        if src.get("audience"):
            request["spec"]["audiences"] = [src["audience"]]
        try:
            out = await self.client.create("serviceaccounts", request,
                                           namespace=md["namespace"], subresource="token")
        except ApiError as exc:
            raise KnetError(f"pod {md['namespace']}/{md['name']}: cannot get a token for "
                            f"service account {account}: {exc.message}") from exc
        status = out.get("status") or {}
        token_path = path / str(src.get("path") or "token")
        _write(token_path, str(status.get("token", "")), mode)
        now = self.clock()
        ttl = (out.get("spec") or {}).get("expirationSeconds")
        if not isinstance(ttl, int):             # the lifetime the server granted
            ttl = datetime.fromisoformat(str(status["expirationTimestamp"])).astimezone(
                UTC).timestamp() - time.time()
        due = now + min(REFRESH_FRACTION * max(0.0, float(ttl)), MAX_AGE)
        self.refresh_at = due if self.refresh_at is None else min(self.refresh_at, due)
        if self.access is not None:
            rel = token_path.relative_to(path)
            _write(path / "kubeconfig", self.access.kubeconfig(f"{SA_PATH}/{rel}"), mode)

    async def _other(self, path: Path, src: Obj, mode: int) -> None:
        ns = self.pod["metadata"]["namespace"]
        if "downwardAPI" in src:
            md = self.pod["metadata"]
            fields = {"metadata.namespace": ns, "metadata.name": md["name"],
                      "metadata.uid": md.get("uid", "")}
            for item in src["downwardAPI"].get("items") or []:
                ref = (item.get("fieldRef") or {}).get("fieldPath", "")
                if ref in fields:
                    _write(path / item["path"], str(fields[ref]), mode)
            return
        for kind in ("configMap", "secret"):
            if kind not in src:
                continue
            ref = src[kind].get("name", "")
            obj = await self.lookup("configmaps" if kind == "configMap" else "secrets", ns, ref)
            data = dict((obj or {}).get("data") or {})
            if kind == "secret":
                import base64
                data = {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
            if obj is None and kind == "configMap" and ref == "kube-root-ca.crt" and self.access:
                data = {"ca.crt": self.access.ca_pem}       # the CA the agent itself trusts
            items = src[kind].get("items")
            files = {i["key"]: i["path"] for i in items} if items else {k: k for k in data}
            for key, rel in files.items():
                if key in data:
                    _write(path / rel, data[key], mode)
