"""The RBAC kinds over HTTP: validation in kube-apiserver's words (roleRef immutable),
`kubectl get` columns, escalation prevention (`escalate`, `bind`) and the
authorization.k8s.io reviews `kubectl auth can-i` sends."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient
from authfixtures import JANE_TOKEN

from control.api.protobuf import decode_object

RBAC = "/apis/rbac.authorization.k8s.io/v1"
AUTHZ = "/apis/authorization.k8s.io/v1"
JANE = {"Authorization": f"Bearer {JANE_TOKEN}"}
TABLE = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}


def ref(kind: str, name: str) -> dict[str, str]:
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name}


def user(name: str) -> dict[str, str]:
    return {"kind": "User", "name": name, "apiGroup": "rbac.authorization.k8s.io"}


async def causes(resp: Any) -> list[tuple[str, str]]:
    body = await resp.json()
    assert resp.status == 422, body
    return [(c["field"], c["message"]) for c in body["details"]["causes"]]


async def test_validation_messages(api: TestClient) -> None:
    resp = await api.post(f"{RBAC}/namespaces/team/roles", json={
        "metadata": {"name": "bad"}, "rules": [
            {"apiGroups": [""], "resources": ["pods"]},
            {"verbs": ["get"], "resources": ["pods"]},
            {"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]})
    assert await causes(resp) == [
        ("rules[0].verbs", "Required value: verbs must contain at least one value"),
        ("rules[1].apiGroups",
         "Required value: resource rules must supply at least one api group"),
        ("rules[2].nonResourceURLs", ('Invalid value: []string{"/healthz"}: namespaced rules '
         "cannot apply to non-resource URLs"))]
    resp = await api.post(f"{RBAC}/namespaces/team/rolebindings", json={
        "metadata": {"name": "bad"}, "roleRef": {"kind": "Secret", "name": "x"},
        "subjects": [{"kind": "User", "name": "jane"}, {"kind": "Robot", "name": "r"},
                     {"kind": "ServiceAccount", "name": "sa",
                      "apiGroup": "rbac.authorization.k8s.io"}]})
    assert await causes(resp) == [
        ("roleRef.apiGroup", ('Unsupported value: "": supported values: '
         '"rbac.authorization.k8s.io"')),
        ("roleRef.kind", ('Unsupported value: "Secret": supported values: "Role", '
         '"ClusterRole"')),
        ("subjects[1].kind", ('Unsupported value: "Robot": supported values: '
         '"ServiceAccount", "User", "Group"')),
        ("subjects[2].apiGroup", ('Unsupported value: "rbac.authorization.k8s.io": '
         'supported values: ""'))]
    resp = await api.post(f"{RBAC}/clusterrolebindings", json={
        "metadata": {"name": "bad"}, "roleRef": ref("Role", "x"),
        "subjects": [{"kind": "ServiceAccount", "name": "sa"}]})
    assert await causes(resp) == [
        ("roleRef.kind", 'Unsupported value: "Role": supported values: "ClusterRole"'),
        ("subjects[0].namespace", "Required value")]
    # names are path segments: colons fine, slashes not
    ok = await api.post(f"{RBAC}/clusterroles", json={"metadata": {"name": "team:reader"}})
    assert ok.status == 201
    resp = await api.post(f"{RBAC}/clusterroles", json={"metadata": {"name": "a/b"}})
    assert await causes(resp) == [("metadata.name", ("Invalid value: \"a/b\": may not "
                                   "contain '/'"))]


async def test_role_ref_is_immutable(api: TestClient) -> None:
    path = f"{RBAC}/namespaces/team/rolebindings"
    resp = await api.post(path, json={"metadata": {"name": "rb"},
                                      "roleRef": ref("ClusterRole", "view"),
                                      "subjects": [user("jane")]})
    assert resp.status == 201
    resp = await api.patch(f"{path}/rb", json={"roleRef": {"name": "edit"}},
                           headers={"Content-Type": "application/merge-patch+json"})
    assert await causes(resp) == [("roleRef", ('Invalid value: rbac.RoleRef{APIGroup:'
                                   '"rbac.authorization.k8s.io", Kind:"ClusterRole", '
                                   'Name:"edit"}: cannot change roleRef'))]
    resp = await api.patch(f"{path}/rb", json={"subjects": [user("jane"), user("bob")]},
                           headers={"Content-Type": "application/merge-patch+json"})
    assert resp.status == 200


async def test_tables(api: TestClient) -> None:
    await api.post(f"{RBAC}/namespaces/team/rolebindings", json={
        "metadata": {"name": "rb"}, "roleRef": ref("ClusterRole", "view"),
        "subjects": [user("jane"), {"kind": "Group", "name": "devs"},
                     {"kind": "ServiceAccount", "name": "ci", "namespace": "team"}]})
    table = await (await api.get(f"{RBAC}/namespaces/team/rolebindings",
                                 headers=TABLE)).json()
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name", "Role", "Age", "Users", "Groups", "ServiceAccounts"]
    cells = table["rows"][0]["cells"]
    assert cells[:2] == ["rb", "ClusterRole/view"] and cells[3:] == ["jane", "devs", "team/ci"]
    table = await (await api.get(f"{RBAC}/clusterroles/view", headers=TABLE)).json()
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Created At"]
    name, created = table["rows"][0]["cells"]
    assert name == "view" and created.endswith("Z") and "T" in created


async def test_escalation_needs_escalate_or_bind(api: TestClient) -> None:
    # jane administers namespace team (admin: roles and rolebindings, no nodes, no secrets
    # elsewhere)
    assert (await api.post(f"{RBAC}/namespaces/team/rolebindings", json={
        "metadata": {"name": "jane-admin"}, "roleRef": ref("ClusterRole", "admin"),
        "subjects": [user("jane")]})).status == 201
    await asyncio.sleep(0.05)
    roles = f"{RBAC}/namespaces/team/roles"
    ok = await api.post(roles, headers=JANE, json={"metadata": {"name": "pods"}, "rules": [
        {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]})
    assert ok.status == 201, await ok.text()
    resp = await api.post(roles, headers=JANE, json={"metadata": {"name": "nodes"}, "rules": [
        {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["nodes"]},
        {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]})
    assert resp.status == 403
    assert (await resp.json())["message"] == (
        'roles.rbac.authorization.k8s.io "nodes" is forbidden: user "jane" '
        '(groups=["system:authenticated"]) is attempting to grant RBAC permissions not '
        'currently held:\n{APIGroups:[""], Resources:["nodes"], Verbs:["get" "list"]}')
    # binding cluster-admin in her namespace: she lacks its rules -> forbidden
    bindings = f"{RBAC}/namespaces/team/rolebindings"
    resp = await api.post(bindings, headers=JANE, json={
        "metadata": {"name": "root"}, "roleRef": ref("ClusterRole", "cluster-admin"),
        "subjects": [user("jane")]})
    assert resp.status == 403
    assert "is attempting to grant RBAC permissions not currently held" in \
        (await resp.json())["message"]
    # binding a role she holds: fine
    assert (await api.post(bindings, headers=JANE, json={
        "metadata": {"name": "bob-view"}, "roleRef": ref("ClusterRole", "view"),
        "subjects": [user("bob")]})).status == 201
    # with `bind` on cluster-admin and `escalate` on roles, both go through
    assert (await api.post(f"{RBAC}/clusterroles", json={
        "metadata": {"name": "granter"}, "rules": [
            {"verbs": ["bind", "escalate"], "apiGroups": ["rbac.authorization.k8s.io"],
             "resources": ["clusterroles", "roles"]}]})).status == 201
    assert (await api.post(f"{RBAC}/clusterrolebindings", json={
        "metadata": {"name": "jane-granter"}, "roleRef": ref("ClusterRole", "granter"),
        "subjects": [user("jane")]})).status == 201
    await asyncio.sleep(0.05)
    assert (await api.post(bindings, headers=JANE, json={
        "metadata": {"name": "root"}, "roleRef": ref("ClusterRole", "cluster-admin"),
        "subjects": [user("jane")]})).status == 201
    assert (await api.post(roles, headers=JANE, json={"metadata": {"name": "nodes"}, "rules": [
        {"verbs": ["get"], "apiGroups": [""], "resources": ["nodes"]}]})).status == 201


async def test_access_reviews(api: TestClient) -> None:
    sa = {"Impersonate-User": "system:serviceaccount:default:default"}
    can_i = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
             "spec": {"resourceAttributes": {"verb": "create", "resource": "pods",
                                             "namespace": "kube-system"}}}
    resp = await api.post(f"{AUTHZ}/selfsubjectaccessreviews", json=can_i)
    body = await resp.json()
    assert resp.status == 201 and body["status"]["allowed"] is True
    assert body["status"]["reason"] == ('RBAC: allowed by ClusterRoleBinding "cluster-admin" '
                                        'of ClusterRole "cluster-admin" to Group '
                                        '"system:masters"')
    body = await (await api.post(f"{AUTHZ}/selfsubjectaccessreviews", json=can_i,
                                 headers=sa)).json()
    assert body["status"] == {"allowed": False}
    sar = {"spec": {"user": "jane", "groups": ["devs"], "nonResourceAttributes": {
        "verb": "get", "path": "/version"}}}
    body = await (await api.post(f"{AUTHZ}/subjectaccessreviews", json=sar)).json()
    assert body["status"]["allowed"] is False                # not system:authenticated
    sar["spec"]["groups"] = ["system:authenticated"]
    body = await (await api.post(f"{AUTHZ}/subjectaccessreviews", json=sar)).json()
    assert body["status"]["allowed"] is True
    resp = await api.post(f"{AUTHZ}/subjectaccessreviews", json={"spec": {
        "resourceAttributes": {"verb": "get", "resource": "pods"}}})
    assert await causes(resp) == [("spec.user", ('Invalid value: "": at least one of user or '
                                   "group must be specified"))]
    local = {"spec": {"user": "jane", "resourceAttributes": {
        "verb": "get", "resource": "pods", "namespace": "default"}}}
    resp = await api.post(f"{AUTHZ}/namespaces/team/localsubjectaccessreviews", json=local)
    assert await causes(resp) == [("spec.resourceAttributes.namespace",
                                   'Invalid value: "default": must match metadata.namespace')]
    local["spec"]["resourceAttributes"]["namespace"] = "team"
    resp = await api.post(f"{AUTHZ}/namespaces/team/localsubjectaccessreviews", json=local)
    assert resp.status == 201 and (await resp.json())["status"]["allowed"] is False
    rules = await (await api.post(f"{AUTHZ}/selfsubjectrulesreviews", headers=sa,
                                  json={"spec": {"namespace": "default"}})).json()
    status = rules["status"]
    assert {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
            "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]} \
        in status["resourceRules"]
    assert {"verbs": ["get"], "nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version",
                                                  "/version/"]} in status["nonResourceRules"]
    assert status["incomplete"] is False
    # a review is a question: 405 for anything but create
    assert (await api.get(f"{AUTHZ}/selfsubjectaccessreviews")).status == 405


def _len(field: int, payload: bytes) -> bytes:
    return bytes([field << 3 | 2, len(payload)]) + payload


def test_protobuf_role_and_binding() -> None:
    rule = _len(1, b"get") + _len(1, b"list") + _len(2, b"") + _len(3, b"pods")
    role = _len(1, _len(1, b"r") + _len(3, b"team")) + _len(2, rule)
    body = b"k8s\x00" + _len(1, _len(1, b"rbac.authorization.k8s.io/v1") + _len(2, b"Role")) \
        + _len(2, role)
    assert decode_object(body) == {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "r", "namespace": "team"},
        "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]}
    subject = _len(1, b"User") + _len(2, b"rbac.authorization.k8s.io") + _len(3, b"jane")
    role_ref = _len(1, b"rbac.authorization.k8s.io") + _len(2, b"Role") + _len(3, b"r")
    rb = _len(1, _len(1, b"rb")) + _len(2, subject) + _len(3, role_ref)
    body = b"k8s\x00" + _len(1, _len(1, b"rbac.authorization.k8s.io/v1")
                             + _len(2, b"RoleBinding")) + _len(2, rb)
    assert decode_object(body)["subjects"] == [
        {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "jane"}]
    assert decode_object(body)["roleRef"] == ref("Role", "r")


async def test_escalation_edges(api: TestClient) -> None:
    # jane may manage roles cluster-wide (without `escalate`) but holds nothing else
    assert (await api.post(f"{RBAC}/clusterroles", json={
        "metadata": {"name": "role-manager"}, "rules": [
            {"verbs": ["get", "list", "create", "update", "patch", "delete"],
             "apiGroups": ["rbac.authorization.k8s.io"],
             "resources": ["clusterroles", "roles"]}]})).status == 201
    assert (await api.post(f"{RBAC}/clusterrolebindings", json={
        "metadata": {"name": "jane-roles"}, "roleRef": ref("ClusterRole", "role-manager"),
        "subjects": [user("jane")]})).status == 201
    await asyncio.sleep(0.05)
    # an aggregationRule needs escalation rights
    resp = await api.post(f"{RBAC}/clusterroles", headers=JANE, json={
        "metadata": {"name": "agg"}, "aggregationRule": {"clusterRoleSelectors": [
            {"matchLabels": {"x": "y"}}]}})
    assert resp.status == 403
    assert (await resp.json())["message"] == (
        'clusterroles.rbac.authorization.k8s.io "agg" is forbidden: must have cluster-admin '
        "privileges to use the aggregationRule")
    # changing only labels of a role granting more than she holds is fine; its rules are not
    merge = {**JANE, "Content-Type": "application/merge-patch+json"}
    assert (await api.patch(f"{RBAC}/clusterroles/view", headers=merge,
                            json={"metadata": {"labels": {"team": "a"}}})).status == 200
    resp = await api.patch(f"{RBAC}/clusterroles/system:basic-user", headers=merge,
                           json={"rules": [{"verbs": ["*"], "apiGroups": ["*"],
                                            "resources": ["*"]}]})
    assert resp.status == 403
    assert "{APIGroups:[\"*\"], Resources:[\"*\"], Verbs:[\"*\"]}" in \
        (await resp.json())["message"]
    resp = await api.post(f"{RBAC}/clusterroles", json={"metadata": {"name": "empty-agg"},
                                                        "aggregationRule": {}})
    assert await causes(resp) == [("aggregationRule.clusterRoleSelectors", (
        "Required value: at least one clusterRoleSelector required if aggregationRule is "
        "non-nil"))]
