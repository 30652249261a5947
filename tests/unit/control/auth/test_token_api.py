"""TokenRequest, TokenReview and the ServiceAccount admission plugin over HTTP (aiohttp's test
client), as kubectl and the kubelet use them: statuses, shapes and kube-apiserver's words."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from control.api.app import Settings, create_app
from control.api.saadmission import ServiceAccountAdmission
from control.auth.satokens import ISSUER
from control.store.memory import MemoryStore

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SAS = "/api/v1/namespaces/default/serviceaccounts"
PODS = "/api/v1/namespaces/default/pods"
REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
WHOAMI = "/apis/authentication.k8s.io/v1/selfsubjectreviews"


@pytest.fixture
async def api() -> AsyncIterator[TestClient]:
    app = create_app(MemoryStore(), Settings(token=TOKEN, plugins=(ServiceAccountAdmission(
        attempts=2, interval=0.01),)))
    async with TestClient(TestServer(app), headers=AUTH) as client:
        r = await client.post("/api/v1/namespaces", json={"metadata": {"name": "default"}})
        assert r.status == 201
        for name in ("default", "robot"):
            r = await client.post(SAS, json={"metadata": {"name": name}})
            assert r.status == 201
        yield client


def _pod(name: str, **spec: object) -> dict:
    return {"metadata": {"name": name}, "spec": {
        "containers": [{"name": "c", "image": "busybox"}], **spec}}


async def _token(api: TestClient, sa: str = "robot", **spec: object) -> dict:
    r = await api.post(f"{SAS}/{sa}/token", json={
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})
    body = await r.json()
    assert r.status == 201, body
    return body


async def _whoami(api: TestClient, token: str) -> tuple[int, dict]:
    r = await api.post(WHOAMI, json={}, headers={"Authorization": f"Bearer {token}"})
    return r.status, await r.json()


async def test_token_request_answers_a_token_that_authenticates(api: TestClient) -> None:
    body = await _token(api)
    assert body["kind"] == "TokenRequest" and body["apiVersion"] == "authentication.k8s.io/v1"
    assert body["spec"] == {"audiences": [ISSUER], "expirationSeconds": 3600}
    assert body["status"]["expirationTimestamp"].endswith("Z")
    code, who = await _whoami(api, body["status"]["token"])
    assert code == 201, who
    assert who["status"]["userInfo"]["username"] == "system:serviceaccount:default:robot"
    assert "system:serviceaccounts:default" in who["status"]["userInfo"]["groups"]
    r = await api.get(PODS, headers={"Authorization": f"Bearer {body['status']['token']}"})
    assert r.status == 200


async def test_token_request_validation(api: TestClient) -> None:
    r = await api.post(f"{SAS}/robot/token", json={"spec": {"expirationSeconds": 599}})
    body = await r.json()
    assert r.status == 422 and body["reason"] == "Invalid"
    assert body["message"] == ('TokenRequest.authentication.k8s.io "robot" is invalid: '
                               "spec.expirationSeconds: Invalid value: 599: may not specify a "
                               "duration less than 10 minutes")
    r = await api.post(f"{SAS}/nobody/token", json={"spec": {}})
    assert r.status == 404 and (await r.json())["message"] == 'serviceaccounts "nobody" not found'
    r = await api.post(f"{SAS}/robot/token", json={"spec": {"boundObjectRef": {
        "kind": "ConfigMap", "apiVersion": "v1", "name": "x"}}})
    assert r.status == 400 and "cannot bind token to object of type" in (await r.json())["message"]


async def test_pod_bound_token_stops_working_when_the_pod_is_deleted(api: TestClient) -> None:
    assert (await api.post(PODS, json=_pod("web", serviceAccountName="robot"))).status == 201
    pod = await (await api.get(f"{PODS}/web")).json()
    body = await _token(api, boundObjectRef={"kind": "Pod", "apiVersion": "v1", "name": "web"})
    assert body["spec"]["boundObjectRef"]["uid"] == pod["metadata"]["uid"]
    token = body["status"]["token"]
    code, who = await _whoami(api, token)
    assert code == 201
    assert who["status"]["userInfo"]["extra"]["authentication.kubernetes.io/pod-name"] == ["web"]
    r = await api.delete(f"{PODS}/web?gracePeriodSeconds=0")
    assert r.status == 200
    code, status = await _whoami(api, token)
    assert code == 401 and status["reason"] == "Unauthorized"
    # a pod of another ServiceAccount cannot carry robot's token
    assert (await api.post(PODS, json=_pod("other"))).status == 201
    r = await api.post(f"{SAS}/robot/token", json={"spec": {"boundObjectRef": {
        "kind": "Pod", "apiVersion": "v1", "name": "other"}}})
    assert r.status == 400
    assert "pod running with different serviceaccount name" in (await r.json())["message"]


async def test_token_review(api: TestClient) -> None:
    token = (await _token(api))["status"]["token"]
    r = await api.post(REVIEWS, json={"apiVersion": "authentication.k8s.io/v1",
                                      "kind": "TokenReview", "spec": {"token": token}})
    body = await r.json()
    assert r.status == 201 and body["kind"] == "TokenReview"
    assert body["status"]["authenticated"] is True
    assert body["status"]["user"]["username"] == "system:serviceaccount:default:robot"
    assert body["status"]["audiences"] == [ISSUER]
    r = await api.post(REVIEWS, json={"spec": {"token": token, "audiences": ["vault"]}})
    status = (await r.json())["status"]
    assert "authenticated" not in status and "is invalid for the target audiences" in status["error"]
    r = await api.post(REVIEWS, json={"spec": {"token": TOKEN}})
    status = (await r.json())["status"]
    assert status["authenticated"] is True and status["user"]["username"] == "kubernetes-admin"
    r = await api.post(REVIEWS, json={"spec": {"token": "garbage"}})
    status = (await r.json())["status"]
    assert r.status == 201 and not status.get("authenticated") and status["error"]
    assert (await api.post(REVIEWS, json={"spec": {}})).status == 400
    assert (await api.get(REVIEWS)).status == 405


async def test_admission_mounts_the_projected_token(api: TestClient) -> None:
    r = await api.post(PODS, json=_pod("web"))
    pod = await r.json()
    assert r.status == 201, pod
    spec = pod["spec"]
    assert spec["serviceAccountName"] == spec["serviceAccount"] == "default"
    [vol] = spec["volumes"]
    assert vol["name"].startswith("kube-api-access-") and len(vol["name"]) == 21
    sources = vol["projected"]["sources"]
    assert sources[0] == {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}
    assert sources[1]["configMap"]["name"] == "kube-root-ca.crt"
    assert sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert spec["containers"][0]["volumeMounts"] == [{
        "name": vol["name"], "readOnly": True,
        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]
    assert "Warning" not in r.headers        # the projected volume is one knet serves


async def test_admission_automount_pod_wins_over_service_account(api: TestClient) -> None:
    r = await api.post(SAS, json={"metadata": {"name": "quiet"},
                                  "automountServiceAccountToken": False})
    assert r.status == 201
    cases = {"a": {"automountServiceAccountToken": False},
             "b": {"serviceAccountName": "quiet"},
             "c": {"serviceAccountName": "quiet", "automountServiceAccountToken": True}}
    for name, spec in cases.items():
        assert (await api.post(PODS, json=_pod(name, **spec))).status == 201
    volumes = {n: (await (await api.get(f"{PODS}/{n}")).json())["spec"].get("volumes")
               for n in cases}
    assert volumes["a"] is None and volumes["b"] is None and len(volumes["c"]) == 1


async def test_admission_rejects_a_missing_service_account(api: TestClient) -> None:
    r = await api.post(PODS, json=_pod("web", serviceAccountName="ghost"))
    body = await r.json()
    assert r.status == 403 and body["reason"] == "Forbidden"
    assert body["message"] == ('pods "web" is forbidden: error looking up service account '
                               'default/ghost: serviceaccount "ghost" not found')
    r = await api.post(PODS, json={"metadata": {"generateName": "web-"}, "spec": {
        "serviceAccountName": "ghost", "containers": [{"name": "c", "image": "x"}]}})
    assert (await r.json())["message"].startswith('pods "web-" is forbidden')


async def test_discovery_lists_the_token_subresource_and_reviews(api: TestClient) -> None:
    core = {r["name"]: r for r in (await (await api.get("/api/v1")).json())["resources"]}
    token = core["serviceaccounts/token"]
    assert (token["group"], token["version"], token["kind"], token["verbs"]) == (
        "authentication.k8s.io", "v1", "TokenRequest", ["create"])
    authn = {r["name"]: r for r in (await (await api.get(
        "/apis/authentication.k8s.io/v1")).json())["resources"]}
    assert authn["tokenreviews"]["verbs"] == ["create"]
    assert authn["tokenreviews"]["namespaced"] is False


async def test_secret_bound_token_dies_with_the_secret(api: TestClient) -> None:
    secrets = "/api/v1/namespaces/default/secrets"
    assert (await api.post(secrets, json={"metadata": {"name": "s"}})).status == 201
    body = await _token(api, boundObjectRef={"kind": "Secret", "apiVersion": "v1", "name": "s"})
    token = body["status"]["token"]
    assert (await _whoami(api, token))[0] == 201
    r = await api.post(f"{SAS}/robot/token", json={"spec": {"boundObjectRef": {
        "kind": "Secret", "apiVersion": "v1", "name": "s", "uid": "not-its-uid"}}})
    assert r.status == 409 and "does not match the UID in record" in (await r.json())["message"]
    assert (await api.delete(f"{secrets}/s")).status == 200
    assert (await _whoami(api, token))[0] == 401
