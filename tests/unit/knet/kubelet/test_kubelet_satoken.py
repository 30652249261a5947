"""The kubelet's projected service-account volume against a real API app (aiohttp test
server): a TokenRequest bound to the pod, the files a pod reads (token, ca.crt, namespace, a
tokenFile kubeconfig), the 80% refresh rule, and a client reading the rotated token file."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from aiohttp.test_utils import TestServer

from control.api.app import Settings, create_app
from control.api.saadmission import ServiceAccountAdmission
from control.client import HttpClient
from control.errors import Unauthorized
from control.store.memory import MemoryStore
from knet.errors import KnetError
from knet.kubelet.satoken import SA_PATH, ApiAccess, ProjectedVolumes

ADMIN = "kubelet-test-admin"
CA = "-----BEGIN CERTIFICATE-----\nknet\n-----END CERTIFICATE-----\n"


@pytest.fixture
async def api() -> AsyncIterator[HttpClient]:
    app = create_app(MemoryStore(), Settings(token=ADMIN, plugins=(ServiceAccountAdmission(
        attempts=1),)))
    server = TestServer(app)
    await server.start_server()
    client = HttpClient(str(server.make_url("")), token=ADMIN, timeout=5)
    try:
        await client.create("namespaces", {"metadata": {"name": "default"}})
        await client.create("serviceaccounts", {"metadata": {"name": "default"}})
        yield client
    finally:
        await client.close()
        await server.close()


class Clock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


async def _lookup(_resource: str, _namespace: str, _name: str) -> None:
    return None


async def test_pod_gets_its_bound_token_and_files(api: HttpClient, tmp_path: Path) -> None:
    pod = await api.create("pods", {"metadata": {"name": "web"}, "spec": {
        "containers": [{"name": "c", "image": "x"}]}})
    [vol] = pod["spec"]["volumes"]
    clock = Clock()
    projected = ProjectedVolumes(pod, tmp_path, client=api, lookup=_lookup, clock=clock,
                                 access=ApiAccess("https://172.18.0.1:6443", CA))
    await projected.write()
    d = tmp_path / "volumes" / vol["name"]
    token = (d / "token").read_text()
    assert token and token != ADMIN
    assert (d / "ca.crt").read_text() == CA and (d / "namespace").read_text() == "default"
    for name in ("token", "ca.crt", "namespace", "kubeconfig"):
        assert stat.S_IMODE(os.stat(d / name).st_mode) == 0o644
    kubeconfig = yaml.safe_load((d / "kubeconfig").read_text())
    assert kubeconfig["users"][0]["user"] == {"tokenFile": f"{SA_PATH}/token"}
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://172.18.0.1:6443"
    # kubelet's rule: refresh once 80% of the 3607 s lifetime has passed
    assert projected.refresh_in() == pytest.approx(0.8 * 3607, abs=2)
    # the token is the pod's ServiceAccount, bound to this pod
    pod_client = HttpClient(api.base_url, token_file=d / "token", timeout=5)
    try:
        review = await pod_client.create("selfsubjectreviews", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
        user = review["status"]["userInfo"]
        assert user["username"] == "system:serviceaccount:default:default"
        assert user["extra"]["authentication.kubernetes.io/pod-uid"] == [pod["metadata"]["uid"]]
        # a refresh writes a new token; the client picks it up when it re-reads the file
        await projected.write(tokens_only=True)
        assert (d / "token").read_text() != token
        (d / "token").write_text("revoked")
        pod_client._token_read = float("-inf")           # as if a minute had passed
        with pytest.raises(Unauthorized):
            await pod_client.get("pods", "web", namespace="default")
    finally:
        await pod_client.close()


async def test_token_for_a_missing_service_account_is_a_retryable_error(
        api: HttpClient, tmp_path: Path) -> None:
    await api.create("serviceaccounts", {"metadata": {"name": "robot"}})
    pod = await api.create("pods", {"metadata": {"name": "web"}, "spec": {
        "serviceAccountName": "robot", "containers": [{"name": "c", "image": "x"}]}})
    await api.delete("serviceaccounts", "robot", namespace="default")
    projected = ProjectedVolumes(pod, tmp_path, client=api, lookup=_lookup, clock=Clock(),
                                 access=None)
    with pytest.raises(KnetError, match="cannot get a token for service account robot"):
        await projected.write()


class FlakyTokens:
    """A client whose TokenRequests fail when told to."""

    def __init__(self) -> None:
        self.calls = 0
        self.fail = False

    async def create(self, resource: str, obj: dict, *, namespace: str | None = None,
                     subresource: str | None = None) -> dict:
        self.calls += 1
        if self.fail:
            raise Unauthorized("API server says no")
        return {"spec": {"expirationSeconds": 1000},
                "status": {"token": f"t{self.calls}", "expirationTimestamp": "2099-01-01T00:00:00Z"}}


async def test_tokens_are_refreshed_at_80_percent_and_retried_after_a_failure(
        tmp_path: Path) -> None:
    pod = {"metadata": {"name": "web", "namespace": "default", "uid": "u1"},
           "spec": {"volumes": [{"name": "kube-api-access-abcde", "projected": {"sources": [
               {"serviceAccountToken": {"expirationSeconds": 1000, "path": "token"}}]}}]}}
    client, clock = FlakyTokens(), Clock()
    projected = ProjectedVolumes(pod, tmp_path, client=client, lookup=_lookup,  # type: ignore[arg-type]
                                 access=None, clock=clock)
    await projected.write()
    token = tmp_path / "volumes" / "kube-api-access-abcde" / "token"
    slept: list[float] = []
    errors: list[str] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.t += seconds
        client.fail = len(slept) == 2            # the second refresh fails
        if len(slept) == 4:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await projected.keep_fresh(on_error=errors.append, sleep=sleep)
    assert slept == [800.0, 800.0, 10.0, 800.0]
    assert len(errors) == 1 and "API server says no" in errors[0]
    assert token.read_text() == "t4"             # t1 written, t2 refresh, t3 failed, t4 retry
