"""Service-account JWTs: the claims kube-apiserver puts in them, and the authenticator's
checks (signature, issuer, expiry on a fake clock, audience, the ServiceAccount and the
bound pod still existing with the same uid)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import jwt
import pytest

from control.api.objects import ObjectService
from control.auth.sakey import SigningKey
from control.auth.satokens import ISSUER, Bound, ServiceAccountTokens, TokenIssuer
from control.clock import FakeClock
from control.errors import Unauthorized

KEY = SigningKey.generate()


async def _account(objects: ObjectService, name: str = "robot") -> dict:
    return (await objects.create("serviceaccounts", {"metadata": {"name": name}},
                                 namespace="default")).object


async def _pod(objects: ObjectService, name: str = "web") -> dict:
    return (await objects.create("pods", {"metadata": {"name": name}, "spec": {
        "containers": [{"name": "c", "image": "x"}]}}, namespace="default")).object


def _tokens(objects: ObjectService, clock: FakeClock, key: SigningKey = KEY,
            audiences: tuple[str, ...] = (ISSUER,)) -> tuple[TokenIssuer, ServiceAccountTokens]:
    return (TokenIssuer(key, now=clock.now),
            ServiceAccountTokens(key, objects, audiences=audiences, now=clock.now))


def _issue(issuer: TokenIssuer, sa: dict, *, seconds: int = 3600,
           audiences: tuple[str, ...] = (ISSUER,), bound: Bound | None = None) -> str:
    md = sa["metadata"]
    token, _ = issuer.issue(namespace=md["namespace"], name=md["name"], uid=md["uid"],
                            audiences=audiences, seconds=seconds, bound=bound)
    return token


async def test_token_has_the_bound_token_claims(objects: ObjectService, clock: FakeClock) -> None:
    sa, pod = await _account(objects), await _pod(objects)
    issuer, _ = _tokens(objects, clock)
    token, expires = issuer.issue(namespace="default", name="robot", uid=sa["metadata"]["uid"],
                                  audiences=[ISSUER], seconds=3607,
                                  bound=Bound("Pod", "web", pod["metadata"]["uid"]))
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, KEY.public, algorithms=["ES256"], audience=ISSUER,
                        options={"verify_exp": False})
    now = int(clock.now().timestamp())
    assert header["alg"] == "ES256" and header["kid"] == KEY.kid
    assert claims["iss"] == ISSUER and claims["sub"] == "system:serviceaccount:default:robot"
    assert claims["aud"] == [ISSUER]
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (now, now, now + 3607)
    assert expires.timestamp() == now + 3607
    assert claims["kubernetes.io"] == {
        "namespace": "default",
        "serviceaccount": {"name": "robot", "uid": sa["metadata"]["uid"]},
        "pod": {"name": "web", "uid": pod["metadata"]["uid"]}}


async def test_valid_token_is_the_service_account(objects: ObjectService,
                                                  clock: FakeClock) -> None:
    sa, pod = await _account(objects), await _pod(objects)
    issuer, authn = _tokens(objects, clock)
    user = await authn.authenticate(_issue(issuer, sa, bound=Bound(
        "Pod", "web", pod["metadata"]["uid"])))
    assert user is not None
    assert user.name == "system:serviceaccount:default:robot"
    assert user.uid == sa["metadata"]["uid"]
    assert user.groups == ("system:serviceaccounts", "system:serviceaccounts:default",
                           "system:authenticated")
    assert user.extra["authentication.kubernetes.io/pod-name"] == ("web",)
    assert user.extra["authentication.kubernetes.io/pod-uid"] == (pod["metadata"]["uid"],)
    assert user.extra["authentication.kubernetes.io/credential-id"][0].startswith("JTI=")


async def test_token_expires(objects: ObjectService, clock: FakeClock) -> None:
    sa = await _account(objects)
    issuer, authn = _tokens(objects, clock)
    token = _issue(issuer, sa, seconds=600)
    await clock.advance(599)
    assert await authn.authenticate(token) is not None
    await clock.advance(1)
    assert await authn.authenticate(token) is None
    with pytest.raises(Unauthorized, match="service account token has expired"):
        await authn.review(token, [ISSUER])


async def test_audience_must_be_the_api_servers(objects: ObjectService,
                                                clock: FakeClock) -> None:
    sa = await _account(objects)
    issuer, authn = _tokens(objects, clock)
    vault = _issue(issuer, sa, audiences=("vault",))
    assert await authn.authenticate(vault) is None
    found = await authn.review(vault, ["vault", "other"])
    assert found is not None and found[1] == ["vault"]
    with pytest.raises(Unauthorized, match="audiences"):
        await authn.review(vault, [ISSUER])


async def test_deleted_or_recreated_service_account_invalidates(objects: ObjectService,
                                                                clock: FakeClock) -> None:
    sa = await _account(objects)
    issuer, authn = _tokens(objects, clock)
    token = _issue(issuer, sa)
    await objects.delete("serviceaccounts", "robot", namespace="default")
    with pytest.raises(Unauthorized, match='serviceaccounts "robot" not found'):
        await authn.review(token, [ISSUER])
    await _account(objects)                                   # same name, new uid
    with pytest.raises(Unauthorized, match="does not match claim"):
        await authn.review(token, [ISSUER])
    assert await authn.authenticate(token) is None


async def test_pod_bound_token_dies_with_the_pod(objects: ObjectService,
                                                 clock: FakeClock) -> None:
    sa, pod = await _account(objects), await _pod(objects)
    issuer, authn = _tokens(objects, clock)
    token = _issue(issuer, sa, bound=Bound("Pod", "web", pod["metadata"]["uid"]))
    assert await authn.authenticate(token) is not None
    await objects.delete("pods", "web", namespace="default", grace_period=0)
    assert await authn.authenticate(token) is None
    await _pod(objects)                                       # a new pod of the same name
    with pytest.raises(Unauthorized, match="pod UID"):
        await authn.review(token, [ISSUER])


async def test_other_keys_issuers_and_garbage(objects: ObjectService, clock: FakeClock) -> None:
    sa = await _account(objects)
    _, authn = _tokens(objects, clock)
    forged = _issue(TokenIssuer(SigningKey.generate(), now=clock.now), sa)
    with pytest.raises(Unauthorized, match="signature"):
        await authn.review(forged, [ISSUER])
    assert await authn.authenticate(forged) is None
    foreign = jwt.encode({"iss": "https://accounts.example", "sub": "x"}, KEY.private,
                         algorithm="ES256")
    assert await authn.review(foreign, [ISSUER]) is None          # not ours: next authenticator
    assert await authn.review("s3cret-static-token", [ISSUER]) is None
    unsigned = jwt.encode({"iss": ISSUER, "sub": "system:serviceaccount:default:robot",
                           "exp": 1 << 40, "kubernetes.io": {}}, None, algorithm="none")
    with pytest.raises(Unauthorized):
        await authn.review(unsigned, [ISSUER])


def test_signing_key_is_made_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "sa.key"
    first = SigningKey.load_or_create(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert SigningKey.load_or_create(path).kid == first.kid
    assert first.kid != SigningKey.generate().kid
