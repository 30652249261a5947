"""The default policy as kube-apiserver reconciles it at start, and ClusterRole aggregation:
what the well-known users and groups may do on a fresh server, and how a reconcile treats
roles users changed."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient

from control.api.objects import ObjectService
from control.auth.bootstrap import Aggregator, ensure_policy
from control.auth.bootstrappolicy import cluster_role_bindings, cluster_roles
from control.auth.rbac import PolicyCache, RBACAuthorizer
from control.auth.rbacsetup import NodeRBAC
from control.auth.types import ANONYMOUS, Attributes, UserInfo
from control.store.memory import MemoryStore

RBAC = "/apis/rbac.authorization.k8s.io/v1"
USER = UserInfo("jane", groups=("system:authenticated",))


def can(authz: RBACAuthorizer, user: UserInfo, verb: str, resource: str, *, ns: str = "",
        group: str = "", sub: str = "") -> bool:
    return authz.decide(Attributes(user=user, verb=verb, api_group=group, resource=resource,
                                   subresource=sub, namespace=ns)).allowed


def loaded(objs: list[dict]) -> RBACAuthorizer:
    cache = PolicyCache()
    for obj in objs:
        cache.put("clusterroles" if obj["kind"] == "ClusterRole" else "clusterrolebindings",
                  obj)
    return RBACAuthorizer(cache)


async def test_defaults_and_aggregation_on_a_fresh_server(api: TestClient,
                                                          rbac: NodeRBAC) -> None:
    names = {r["metadata"]["name"] for r in (await (await api.get(
        f"{RBAC}/clusterroles")).json())["items"]}
    assert {"cluster-admin", "admin", "edit", "view", "system:basic-user", "system:discovery",
            "system:public-info-viewer", "system:node-proxier", "system:node",
            "system:kube-dns", "system:coredns"} <= names
    authz = rbac.rbac
    # aggregated: view has pods but no secrets; edit has view's reads and writes; admin has
    # edit's plus roles and rolebindings
    jane = UserInfo("jane", groups=("system:authenticated",))
    for role, yes, no in (
            ("view", [("list", "pods", ""), ("get", "deployments", "apps")],
             [("get", "secrets", ""), ("create", "pods", "")]),
            ("edit", [("list", "pods", ""), ("get", "secrets", ""), ("create", "pods", "")],
             [("create", "roles", "rbac.authorization.k8s.io")]),
            ("admin", [("create", "pods", ""), ("create", "roles",
                                                "rbac.authorization.k8s.io")],
             [("create", "nodes", "")])):
        resp = await api.post(f"{RBAC}/namespaces/team/rolebindings", json={
            "metadata": {"name": f"jane-{role}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": role},
            "subjects": [{"kind": "User", "name": "jane",
                          "apiGroup": "rbac.authorization.k8s.io"}]})
        assert resp.status == 201, await resp.text()
        await asyncio.sleep(0.05)
        for verb, resource, group in yes:
            assert can(authz, jane, verb, resource, ns="team", group=group), (role, verb,
                                                                              resource)
        for verb, resource, group in no:
            assert not can(authz, jane, verb, resource, ns="team", group=group), (role, verb,
                                                                                  resource)
        await api.delete(f"{RBAC}/namespaces/team/rolebindings/jane-{role}")


async def test_new_aggregate_to_view_role_flows_into_view_edit_admin(api: TestClient) -> None:
    resp = await api.post(f"{RBAC}/clusterroles", json={
        "metadata": {"name": "widgets-view",
                     "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
        "rules": [{"verbs": ["get"], "apiGroups": ["example.com"], "resources": ["widgets"]}]})
    assert resp.status == 201
    want = {"verbs": ["get"], "apiGroups": ["example.com"], "resources": ["widgets"]}
    for _ in range(100):
        roles = {n: (await (await api.get(f"{RBAC}/clusterroles/{n}")).json())["rules"]
                 for n in ("view", "edit", "admin")}
        if all(want in rules for rules in roles.values()):
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError(f"widgets rule not aggregated: {roles}")


def test_who_may_do_what_by_default() -> None:
    authz = loaded(cluster_roles() + cluster_role_bindings())
    admin = UserInfo("kubernetes-admin", groups=("system:masters", "system:authenticated"))
    assert can(authz, admin, "delete", "nodes")
    assert can(authz, admin, "create", "pods", ns="kube-system")
    for path in ("/version", "/healthz", "/readyz", "/livez"):
        anon = Attributes(user=ANONYMOUS, verb="get", resource_request=False, path=path)
        assert authz.decide(anon).allowed, path
    discovery = Attributes(user=ANONYMOUS, verb="get", resource_request=False, path="/apis")
    assert not authz.decide(discovery).allowed          # discovery needs authentication
    assert authz.decide(Attributes(user=USER, verb="get", resource_request=False,
                                   path="/apis/apps/v1")).allowed
    assert not can(authz, USER, "list", "pods", ns="default")
    assert can(authz, USER, "create", "selfsubjectaccessreviews",
               group="authorization.k8s.io")
    proxy = UserInfo("system:kube-proxy", groups=("system:authenticated",))
    assert can(authz, proxy, "watch", "endpointslices", group="discovery.k8s.io")
    assert can(authz, proxy, "list", "services")
    assert not can(authz, proxy, "list", "secrets")
    assert can(authz, proxy, "watch", "pods")             # knet's proxy names flow endpoints
    dns = UserInfo("system:serviceaccount:kube-system:coredns",
                   groups=("system:serviceaccounts", "system:serviceaccounts:kube-system"))
    assert can(authz, dns, "watch", "endpointslices", group="discovery.k8s.io")
    assert can(authz, dns, "list", "services")
    assert not can(authz, dns, "create", "services", ns="default")


async def test_reconcile_adds_what_is_missing_and_keeps_user_changes() -> None:
    objects = ObjectService(MemoryStore())
    await objects.start()
    await ensure_policy(objects)
    view = await objects.get("clusterroles", "system:public-info-viewer")
    view["rules"] = [{"verbs": ["get"], "nonResourceURLs": ["/mine"]}]
    view["metadata"]["labels"]["team"] = "x"
    await objects.update("clusterroles", view)
    frozen = await objects.get("clusterroles", "system:discovery")
    frozen["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"] = "false"
    frozen["rules"] = []
    await objects.update("clusterroles", frozen)
    binding = await objects.get("clusterrolebindings", "cluster-admin")
    binding["subjects"] = [{"kind": "User", "name": "root",
                            "apiGroup": "rbac.authorization.k8s.io"}]
    await objects.update("clusterrolebindings", binding)

    await ensure_policy(objects)                          # the next server start
    view = await objects.get("clusterroles", "system:public-info-viewer")
    assert view["rules"][0] == {"verbs": ["get"], "nonResourceURLs": ["/mine"]}
    assert {"verbs": ["get"], "nonResourceURLs": ["/healthz", "/livez", "/readyz",
                                                  "/version", "/version/"]} in view["rules"]
    assert view["metadata"]["labels"]["team"] == "x"
    assert (await objects.get("clusterroles", "system:discovery"))["rules"] == []
    subjects = (await objects.get("clusterrolebindings", "cluster-admin"))["subjects"]
    assert [s["name"] for s in subjects] == ["root", "system:masters"]
    assert await Aggregator(objects).sync() > 0           # admin/edit/view filled
    assert await Aggregator(objects).sync() == 0          # and stable
