"""The kubelet API over HTTPS with its real routes: no credentials is 401, a certificate of
another CA or plain HTTP fails before any route, a cluster-CA certificate outside
system:masters is 403 in the kubelet's words, and the API server's kubelet client gets
through (here to the "not running on this node" 404 of an unknown pod)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from control.api.ca import ClusterCA, Identity, client_context, server_context
from control.api.tls import ensure_client_certificates, kubelet_client_context
from control.auth.types import UserInfo
from knet.kubelet.auth import KubeletAuth, MastersOnly, SubjectAccessReviews, request_attributes
from knet.kubelet.server import create_app

POD = "/api/v1/namespaces/default/pods/p"


class Tokens:
    """A token authenticator standing in for TokenReview."""

    def __init__(self, users: dict[str, UserInfo]) -> None:
        self.users = users

    async def authenticate(self, token: str) -> UserInfo | None:
        return self.users.get(token)


@pytest.fixture
async def kubelet(tmp_path: Path) -> AsyncIterator[str]:
    ensure_client_certificates(tmp_path)
    ca = ClusterCA.load(tmp_path)
    crt, key = ca.ensure_pair("kubelet-node-1", Identity("system:node:node-1"), server=True,
                              ips=["127.0.0.1"])
    auth = KubeletAuth(tokens=Tokens({
        "admin-token": UserInfo("admin", groups=("system:masters",)),
        "pod-token": UserInfo("system:serviceaccount:default:default")}))
    runner = web.AppRunner(create_app(lambda _k: None, runtime=None, auth=auth))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0,
                       ssl_context=server_context(crt, key, client_ca=ca.cert_path))
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _get(url: str, tls: ssl.SSLContext | bool, **kw: object) -> tuple[int, str]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls)) as s, \
            s.get(url, **kw) as r:  # type: ignore[arg-type]
        return r.status, await r.text()


async def test_no_credentials_is_401(kubelet: str, tmp_path: Path) -> None:
    anonymous = client_context(tmp_path / "ca.crt")
    for path in ("/log", "/exec?command=id"):
        assert await _get(f"https://{kubelet}{POD}{path}", anonymous) == (401, "Unauthorized")


async def test_another_ca_or_plain_http_never_reaches_a_route(kubelet: str,
                                                              tmp_path: Path) -> None:
    other = ClusterCA.ensure(tmp_path / "other")
    crt, key = other.ensure_pair("x", Identity("kube-apiserver-kubelet-client",
                                               ("system:masters",)), client=True)
    with pytest.raises(aiohttp.ClientError):
        await _get(f"https://{kubelet}{POD}/exec?command=id",
                   client_context(tmp_path / "ca.crt", crt, key))
    with pytest.raises(aiohttp.ClientError):
        await _get(f"http://{kubelet}{POD}/exec?command=id", False)


async def test_other_users_are_forbidden_in_the_kubelets_words(kubelet: str,
                                                               tmp_path: Path) -> None:
    crt, key = ClusterCA.load(tmp_path).ensure_pair("dev", Identity("jane", ("dev",)),
                                                    client=True)
    status, text = await _get(f"https://{kubelet}{POD}/exec?command=id",
                              client_context(tmp_path / "ca.crt", crt, key))
    assert status == 403
    assert text == "Forbidden (user=jane, verb=get, resource=nodes, subresource=proxy)"
    status, text = await _get(f"https://{kubelet}{POD}/log",
                              client_context(tmp_path / "ca.crt"),
                              headers={"Authorization": "Bearer pod-token"})
    assert status == 403 and "user=system:serviceaccount:default:default" in text


async def test_api_server_client_and_masters_token_get_through(kubelet: str,
                                                               tmp_path: Path) -> None:
    status, text = await _get(f"https://{kubelet}{POD}/log", kubelet_client_context(tmp_path))
    assert status == 404 and "not running on this node" in text
    status, text = await _get(f"https://{kubelet}{POD}/log", client_context(tmp_path / "ca.crt"),
                              headers={"Authorization": "Bearer admin-token"})
    assert status == 404
    status, _ = await _get(f"https://{kubelet}{POD}/log", client_context(tmp_path / "ca.crt"),
                           headers={"Authorization": "Bearer unknown"})
    assert status == 401


def test_request_attributes_follow_the_kubelet() -> None:
    user = UserInfo("u")
    assert request_attributes(user, "POST", POD + "/exec").verb == "create"
    assert request_attributes(user, "GET", POD + "/log").subresource == "proxy"
    assert request_attributes(user, "GET", "/stats/summary").subresource == "stats"
    assert request_attributes(user, "GET", "/logs/syslog").subresource == "log"
    assert request_attributes(user, "GET", "/flows").resource == "nodes"


async def test_masters_only_until_subject_access_review() -> None:
    authz = MastersOnly()
    allowed = await authz.authorize(request_attributes(
        UserInfo("kube-apiserver-kubelet-client"), "GET", "/"))
    masters = await authz.authorize(request_attributes(
        UserInfo("x", groups=("system:masters",)), "GET", "/"))
    other = await authz.authorize(request_attributes(
        UserInfo("system:node:node-2", groups=("system:nodes",)), "GET", "/"))
    assert allowed.allowed and masters.allowed and not other.allowed


class ReviewingApi:
    """The API server's side of TokenReview and SubjectAccessReview (a Client's `create`);
    with `served=False` it answers as today's API server does: unknown resource."""

    def __init__(self, *, served: bool = True, allow: bool = False) -> None:
        self.served, self.allow = served, allow
        self.asked: list[dict[str, Any]] = []

    async def create(self, resource: str, obj: dict[str, Any], **_: Any) -> dict[str, Any]:
        if not self.served:
            raise KeyError(f"unknown resource {resource!r}")
        self.asked.append(obj)
        if resource == "tokenreviews":
            ok = obj["spec"]["token"] == "sa-token"
            return {**obj, "status": {"authenticated": ok, "user": {
                "username": "system:serviceaccount:default:default",
                "groups": ["system:serviceaccounts", "system:authenticated"]} if ok else {}}}
        return {**obj, "status": {"allowed": self.allow, "reason": "RBAC says so"}}


@pytest.fixture
async def serve_kubelet(tmp_path: Path) -> AsyncIterator[Any]:
    runners: list[web.AppRunner] = []
    ensure_client_certificates(tmp_path)
    ca = ClusterCA.load(tmp_path)
    crt, key = ca.ensure_pair("k", Identity("system:node:node-1"), server=True,
                              ips=["127.0.0.1"])

    async def start(auth: KubeletAuth) -> str:
        runner = web.AppRunner(create_app(lambda _k: None, runtime=None, auth=auth))
        runners.append(runner)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0,
                           ssl_context=server_context(crt, key, client_ca=ca.cert_path))
        await site.start()
        return f"https://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    try:
        yield start
    finally:
        for r in runners:
            await r.cleanup()


async def test_tokens_and_others_go_to_the_api_servers_reviews(serve_kubelet: Any,
                                                               tmp_path: Path) -> None:
    api = ReviewingApi(allow=False)
    base = await serve_kubelet(KubeletAuth.for_node(api, "node-1"))  # type: ignore[arg-type]
    anon = client_context(tmp_path / "ca.crt")
    status, text = await _get(f"{base}{POD}/exec?command=id", anon,
                              headers={"Authorization": "Bearer sa-token"})
    assert status == 403
    assert text == ("Forbidden (user=system:serviceaccount:default:default, verb=get, "
                    "resource=nodes, subresource=proxy)")
    sar = api.asked[-1]
    assert sar["kind"] == "SubjectAccessReview" and sar["spec"]["resourceAttributes"] == {
        "verb": "get", "resource": "nodes", "subresource": "proxy", "name": "node-1"}
    assert sar["spec"]["groups"] == ["system:serviceaccounts", "system:authenticated"]
    assert (await _get(f"{base}{POD}/log", anon, headers={"Authorization": "Bearer bad"}))[0] \
        == 401
    api.allow = True   # this kubelet keeps its "no" for 30 s (see the cache test): a new one
    base = await serve_kubelet(KubeletAuth.for_node(api, "node-1"))  # type: ignore[arg-type]
    status, _ = await _get(f"{base}{POD}/log", anon, headers={"Authorization": "Bearer sa-token"})
    assert status == 404                                    # allowed: on to the handler
    asked = len(api.asked)
    assert (await _get(f"{base}{POD}/log", kubelet_client_context(tmp_path)))[0] == 404
    assert len(api.asked) == asked                          # the API server's client: no review


async def test_without_the_reviews_only_masters_pass(serve_kubelet: Any, tmp_path: Path) -> None:
    base = await serve_kubelet(KubeletAuth.for_node(ReviewingApi(served=False),  # type: ignore[arg-type]
                                                    "node-1"))
    anon = client_context(tmp_path / "ca.crt")
    assert await _get(f"{base}{POD}/log", anon, headers={"Authorization": "Bearer sa-token"}) \
        == (401, "Unauthorized")
    crt, key = ClusterCA.load(tmp_path).ensure_pair("n2", Identity("system:node:node-2",
                                                                   ("system:nodes",)), client=True)
    status, text = await _get(f"{base}{POD}/log", client_context(tmp_path / "ca.crt", crt, key))
    assert status == 403 and "user=system:node:node-2" in text
    assert (await _get(f"{base}{POD}/log", kubelet_client_context(tmp_path)))[0] == 404


async def test_review_answers_are_kept_like_the_kubelets_webhook_cache() -> None:
    """Allowed kept 5 min, denied 30 s (per user and request kind); unanswered never kept."""
    api = ReviewingApi(allow=True)
    now = [1000.0]
    sar = SubjectAccessReviews(api, "node-1", clock=lambda: now[0])  # type: ignore[arg-type]
    sa = UserInfo("system:serviceaccount:default:default", groups=("system:serviceaccounts",))
    exec_ = request_attributes(sa, "POST", f"{POD}/exec")
    assert (await sar.authorize(exec_)).allowed
    now[0] += 299
    api.allow = False                         # revoked: the kept "yes" still stands ...
    assert (await sar.authorize(exec_)).allowed and len(api.asked) == 1
    other = request_attributes(UserInfo("someone-else"), "POST", f"{POD}/exec")
    assert not (await sar.authorize(other)).allowed and len(api.asked) == 2
    now[0] += 2                               # ... for 5 minutes
    assert not (await sar.authorize(exec_)).allowed and len(api.asked) == 3
    api.allow = True
    now[0] += 29
    assert not (await sar.authorize(exec_)).allowed and len(api.asked) == 3
    now[0] += 2                               # a "no" is asked again after 30 s
    assert (await sar.authorize(exec_)).allowed and len(api.asked) == 4
    assert (await sar.authorize(request_attributes(sa, "GET", f"{POD}/log"))).allowed
    assert len(api.asked) == 5                # another subresource: its own answer
    api.served = False
    down = request_attributes(UserInfo("new-user"), "GET", "/pods")
    assert not (await sar.authorize(down)).allowed
    api.served = True
    assert (await sar.authorize(down)).allowed and len(api.asked) == 6
