"""Impersonation through the API middleware: Impersonate-* headers act as another user only
with the `impersonate` verb on each part, 403s in kube-apiserver's words, and the groups
kube-apiserver gives the impersonated user (SelfSubjectReview shows them)."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient
from authfixtures import JANE_TOKEN

RBAC = "/apis/rbac.authorization.k8s.io/v1"
WHOAMI = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
SA = "system:serviceaccount:default:default"


async def whoami(api: TestClient, headers: dict[str, str]) -> tuple[int, dict]:
    resp = await api.post(WHOAMI, json={"apiVersion": "authentication.k8s.io/v1",
                                        "kind": "SelfSubjectReview"}, headers=headers)
    return resp.status, await resp.json()


async def test_admin_impersonates_user_and_groups(api: TestClient) -> None:
    status, body = await whoami(api, {"Impersonate-User": "jane",
                                      "Impersonate-Group": "devs"})
    assert status == 201
    assert body["status"]["userInfo"] == {"username": "jane",
                                          "groups": ["devs", "system:authenticated"]}
    status, body = await whoami(api, {"Impersonate-User": SA})
    assert body["status"]["userInfo"] == {
        "username": SA, "groups": ["system:serviceaccounts", "system:serviceaccounts:default",
                                   "system:authenticated"]}
    status, body = await whoami(api, {"Impersonate-User": "jane", "Impersonate-Uid": "42",
                                      "Impersonate-Extra-Scopes": "a"})
    assert body["status"]["userInfo"]["uid"] == "42"
    assert body["status"]["userInfo"]["extra"] == {"scopes": ["a"]}


async def test_impersonated_user_is_authorized_as_itself(api: TestClient) -> None:
    resp = await api.post("/api/v1/namespaces/kube-system/pods", headers={
        "Impersonate-User": SA}, json={"metadata": {"name": "p"}, "spec": {
            "containers": [{"name": "c", "image": "knet/whoami"}]}})
    assert resp.status == 403
    body = await resp.json()
    assert body["message"] == ('pods is forbidden: User "system:serviceaccount:default:default"'
                               ' cannot create resource "pods" in API group "" in the '
                               'namespace "kube-system"')
    assert body["reason"] == "Forbidden" and body["details"] == {"kind": "pods"}


async def test_impersonation_needs_the_impersonate_verb(api: TestClient) -> None:
    jane = {"Authorization": f"Bearer {JANE_TOKEN}"}
    status, body = await whoami(api, {**jane, "Impersonate-User": "bob"})
    assert status == 403
    assert body["message"] == ('users "bob" is forbidden: User "jane" cannot impersonate '
                               'resource "users" in API group "" at the cluster scope')
    role = {"metadata": {"name": "imp"}, "rules": [
        {"verbs": ["impersonate"], "apiGroups": [""], "resources": ["users"],
         "resourceNames": ["bob"]}]}
    assert (await api.post(f"{RBAC}/clusterroles", json=role)).status == 201
    binding = {"metadata": {"name": "imp"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                           "name": "imp"},
               "subjects": [{"kind": "User", "name": "jane",
                             "apiGroup": "rbac.authorization.k8s.io"}]}
    assert (await api.post(f"{RBAC}/clusterrolebindings", json=binding)).status == 201
    await asyncio.sleep(0.05)
    status, body = await whoami(api, {**jane, "Impersonate-User": "bob"})
    assert status == 201 and body["status"]["userInfo"]["username"] == "bob"
    status, _ = await whoami(api, {**jane, "Impersonate-User": "carol"})
    assert status == 403
    # each group is checked on its own: bob is allowed, system:masters is not
    status, body = await whoami(api, {**jane, "Impersonate-User": "bob",
                                      "Impersonate-Group": "system:masters"})
    assert status == 403
    assert body["message"].startswith('groups "system:masters" is forbidden: User "jane" '
                                      'cannot impersonate resource "groups"')
    # and a service account is a serviceaccounts resource in its namespace
    status, body = await whoami(api, {**jane, "Impersonate-User": SA})
    assert status == 403
    assert body["message"] == ('serviceaccounts "default" is forbidden: User "jane" cannot '
                               'impersonate resource "serviceaccounts" in API group "" in the '
                               'namespace "default"')


async def test_group_without_user_is_an_error(api: TestClient) -> None:
    resp = await api.get("/api/v1/namespaces", headers={"Impersonate-Group": "devs"})
    assert resp.status == 500
    assert "without impersonating a user" in (await resp.json())["message"]
