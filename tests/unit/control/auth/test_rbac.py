"""The RBAC authorizer on a PolicyCache: rule matching (verbs, groups, `*`, subresources,
`*/scale`, resourceNames, non-resource URLs with a trailing `*`), subjects (User, Group,
ServiceAccount), ClusterRoleBindings vs RoleBindings, and kube-apiserver's reasons."""

from __future__ import annotations

from typing import Any

import pytest

from control.auth.rbac import PolicyCache, RBACAuthorizer
from control.auth.rbacrules import Rule, covers
from control.auth.types import Attributes, Decision, FirstAuthorizer, UserInfo, Verdict

JANE = UserInfo("jane", groups=("devs", "system:authenticated"))
SA = UserInfo("system:serviceaccount:team:builder",
              groups=("system:serviceaccounts", "system:serviceaccounts:team"))


def role(name: str, *rules: dict[str, Any], ns: str = "") -> dict[str, Any]:
    md = {"name": name, **({"namespace": ns} if ns else {})}
    return {"metadata": md, "rules": list(rules)}


def binding(name: str, kind: str, role_name: str, *subjects: dict[str, str],
            ns: str = "") -> dict[str, Any]:
    md = {"name": name, **({"namespace": ns} if ns else {})}
    return {"metadata": md, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind,
                                        "name": role_name}, "subjects": list(subjects)}


def res(verb: str, resource: str, *, user: UserInfo = JANE, group: str = "", ns: str = "",
        name: str = "", sub: str = "") -> Attributes:
    return Attributes(user=user, verb=verb, api_group=group, resource=resource,
                      subresource=sub, namespace=ns, name=name)


def url(verb: str, path: str, user: UserInfo = JANE) -> Attributes:
    return Attributes(user=user, verb=verb, resource_request=False, path=path)


def rule(**kw: Any) -> Rule:
    return Rule.from_wire(kw)


@pytest.mark.parametrize(("r", "attrs", "allowed"), [
    (rule(verbs=["get"], apiGroups=[""], resources=["pods"]), res("get", "pods"), True),
    (rule(verbs=["get"], apiGroups=[""], resources=["pods"]), res("list", "pods"), False),
    (rule(verbs=["*"], apiGroups=[""], resources=["pods"]), res("delete", "pods"), True),
    (rule(verbs=["get"], apiGroups=["apps"], resources=["pods"]), res("get", "pods"), False),
    (rule(verbs=["get"], apiGroups=["*"], resources=["deployments"]),
     res("get", "deployments", group="apps"), True),
    (rule(verbs=["get"], apiGroups=[""], resources=["*"]), res("get", "secrets"), True),
    (rule(verbs=["get"], apiGroups=[""], resources=["*"]), res("get", "pods", sub="log"), True),
    # a subresource needs its own grant
    (rule(verbs=["get"], apiGroups=[""], resources=["pods"]), res("get", "pods", sub="log"),
     False),
    (rule(verbs=["get"], apiGroups=[""], resources=["pods/log"]),
     res("get", "pods", sub="log"), True),
    (rule(verbs=["get"], apiGroups=[""], resources=["pods/log"]), res("get", "pods"), False),
    (rule(verbs=["update"], apiGroups=["apps"], resources=["*/scale"]),
     res("update", "deployments", group="apps", sub="scale"), True),
    (rule(verbs=["update"], apiGroups=["apps"], resources=["*/scale"]),
     res("update", "deployments", group="apps"), False),
    (rule(verbs=["get"], apiGroups=[""], resources=["configmaps"], resourceNames=["a"]),
     res("get", "configmaps", name="a"), True),
    (rule(verbs=["get"], apiGroups=[""], resources=["configmaps"], resourceNames=["a"]),
     res("get", "configmaps", name="b"), False),
    (rule(verbs=["list"], apiGroups=[""], resources=["configmaps"], resourceNames=["a"]),
     res("list", "configmaps"), False),
    (rule(verbs=["get"], nonResourceURLs=["/healthz"]), url("get", "/healthz"), True),
    (rule(verbs=["get"], nonResourceURLs=["/healthz"]), url("get", "/healthz/etcd"), False),
    (rule(verbs=["get"], nonResourceURLs=["/apis/*"]), url("get", "/apis/apps/v1"), True),
    (rule(verbs=["get"], nonResourceURLs=["/apis/*"]), url("get", "/api/v1"), False),
    (rule(verbs=["get"], nonResourceURLs=["*"]), url("get", "/anything"), True),
    (rule(verbs=["get"], nonResourceURLs=["/healthz"]), url("post", "/healthz"), False),
    # resource rules never match a URL and the other way round
    (rule(verbs=["get"], apiGroups=["*"], resources=["*"]), url("get", "/healthz"), False),
])
def test_rule_matching(r: Rule, attrs: Attributes, allowed: bool) -> None:
    assert r.allows(attrs) is allowed


def test_cluster_and_namespaced_bindings_and_subject_kinds() -> None:
    cache = PolicyCache()
    authz = RBACAuthorizer(cache)
    cache.put("clusterroles", role("reader", {"verbs": ["get", "list"], "apiGroups": [""],
                                              "resources": ["pods"]}))
    cache.put("roles", role("deployer", {"verbs": ["create"], "apiGroups": ["apps"],
                                          "resources": ["deployments"]}, ns="team"))
    # a ClusterRole bound by a RoleBinding grants only inside that namespace
    cache.put("rolebindings", binding("devs-read", "ClusterRole", "reader",
                                      {"kind": "Group", "name": "devs"}, ns="team"))
    cache.put("rolebindings", binding("sa-deploy", "Role", "deployer",
                                      {"kind": "ServiceAccount", "name": "builder"}, ns="team"))
    assert authz.decide(res("get", "pods", ns="team")).allowed
    assert not authz.decide(res("get", "pods", ns="other")).allowed
    assert not authz.decide(res("list", "pods")).allowed       # cluster-wide: no
    assert authz.decide(res("create", "deployments", group="apps", ns="team",
                            user=SA)).allowed
    assert not authz.decide(res("create", "deployments", group="apps", ns="team")).allowed
    # a ClusterRoleBinding to a user grants everywhere
    cache.put("clusterrolebindings", binding("jane-read", "ClusterRole", "reader",
                                             {"kind": "User", "name": "jane"}))
    decision = authz.decide(res("list", "pods"))
    assert decision.allowed
    assert decision.reason == ('RBAC: allowed by ClusterRoleBinding "jane-read" of '
                               'ClusterRole "reader" to User "jane"')
    sa_reason = authz.decide(res("create", "deployments", group="apps", ns="team",
                                 user=SA)).reason
    assert sa_reason == ('RBAC: allowed by RoleBinding "sa-deploy/team" of Role "deployer" '
                         'to ServiceAccount "builder/team"')


def test_changes_apply_at_once_and_deletes_revoke() -> None:
    cache = PolicyCache()
    authz = RBACAuthorizer(cache)
    b = binding("b", "ClusterRole", "reader", {"kind": "User", "name": "jane"})
    cache.put("clusterrolebindings", b)
    assert not authz.decide(res("get", "pods")).allowed        # role not there yet
    cache.put("clusterroles", role("reader", {"verbs": ["get"], "apiGroups": [""],
                                              "resources": ["pods"]}))
    assert authz.decide(res("get", "pods")).allowed             # memo dropped on change
    cache.remove("clusterrolebindings", b)
    assert not authz.decide(res("get", "pods")).allowed


def test_dangling_references_give_upstream_reasons() -> None:
    cache = PolicyCache()
    authz = RBACAuthorizer(cache)
    cache.put("clusterrolebindings", binding("b", "ClusterRole", "gone",
                                             {"kind": "User", "name": "jane"}))
    decision = authz.decide(res("get", "pods"))
    assert decision.verdict is Verdict.NO_OPINION
    assert decision.reason == 'RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found'
    cache.put("rolebindings", binding("r", "Role", "missing",
                                      {"kind": "User", "name": "jane"}, ns="x"))
    assert authz.decide(res("get", "pods", ns="x")).reason == (
        'RBAC: [clusterrole.rbac.authorization.k8s.io "gone" not found, '
        'role.rbac.authorization.k8s.io "missing" not found]')
    # nobody bound: no opinion and no reason, so the 403 reads exactly like kube-apiserver's
    other = UserInfo("bob", groups=("system:authenticated",))
    assert authz.decide(res("get", "pods", user=other)).reason == ""


def test_service_account_subject_uses_binding_namespace_by_default() -> None:
    cache = PolicyCache()
    cache.put("clusterroles", role("all", {"verbs": ["*"], "apiGroups": ["*"],
                                           "resources": ["*"]}))
    cache.put("clusterrolebindings", binding(
        "sa", "ClusterRole", "all", {"kind": "ServiceAccount", "name": "builder",
                                     "namespace": "other"}))
    assert not RBACAuthorizer(cache).decide(res("get", "pods", user=SA)).allowed
    cache.put("clusterrolebindings", binding(
        "sa", "ClusterRole", "all", {"kind": "ServiceAccount", "name": "builder",
                                     "namespace": "team"}))
    assert RBACAuthorizer(cache).decide(res("get", "pods", user=SA)).allowed


def test_covers() -> None:
    owned = (rule(verbs=["get", "list"], apiGroups=[""], resources=["pods", "*/scale"]),
             rule(verbs=["get"], nonResourceURLs=["/apis/*"]))
    assert covers(owned, rule(verbs=["get"], apiGroups=[""], resources=["pods"]))
    assert covers(owned, rule(verbs=["list"], apiGroups=[""], resources=["rc/scale"]))
    assert not covers(owned, rule(verbs=["delete"], apiGroups=[""], resources=["pods"]))
    assert not covers(owned, rule(verbs=["get"], apiGroups=[""], resources=["*"]))
    assert covers(owned, rule(verbs=["get"], apiGroups=[""], resources=["pods"],
                              resourceNames=["a"]))
    assert covers(owned, rule(verbs=["get"], nonResourceURLs=["/apis/apps"]))
    assert not covers(owned, rule(verbs=["get"], nonResourceURLs=["/api"]))


async def test_union_keeps_members_reasons_and_adds_none() -> None:
    cache = PolicyCache()
    cache.put("clusterrolebindings", binding("b", "ClusterRole", "gone",
                                             {"kind": "User", "name": "jane"}))

    class Silent:
        async def authorize(self, attrs: Attributes) -> Decision:
            return Decision(Verdict.NO_OPINION)

    chain = FirstAuthorizer([Silent(), RBACAuthorizer(cache)])
    decision = await chain.authorize(res("get", "pods"))
    assert decision.reason == 'RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found'
    other = UserInfo("bob")
    assert (await chain.authorize(res("get", "pods", user=other))).reason == ""
