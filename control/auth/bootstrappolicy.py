"""Kubernetes' default ClusterRoles and ClusterRoleBindings, as kube-apiserver creates them
(plugin/pkg/auth/authorizer/rbac/bootstrappolicy, testdata/cluster-roles.yaml and
cluster-role-bindings.yaml), plus the few kubeadm adds that knet's components need
(kube-proxy's and CoreDNS's service accounts), and one of knet's own: its kube-proxy also
watches pods (to name the pod behind each endpoint in flow records).

Pure data as wire dicts: `cluster_roles()` and `cluster_role_bindings()` build fresh copies
each call. Roles that knet's API does not serve (storage, certificates, ...) are kept where
upstream has them, so `kubectl get clusterroles` reads like a cluster's.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AUTOUPDATE", "cluster_role_bindings", "cluster_roles"]

Obj = dict[str, Any]
AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"
_RW = ["create", "delete", "deletecollection", "patch", "update"]
_READ = ["get", "list", "watch"]
_ALL_RW = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
_EVENTS = ("", "events.k8s.io")


def _r(verbs: list[str] | str, groups: tuple[str, ...] | str, resources: list[str] | str,
       names: list[str] | None = None) -> Obj:
    rule: Obj = {"verbs": [verbs] if isinstance(verbs, str) else sorted(verbs),
                 "apiGroups": [groups] if isinstance(groups, str) else list(groups),
                 "resources": [resources] if isinstance(resources, str) else list(resources)}
    if names:
        rule["resourceNames"] = names
    return rule


def _urls(verbs: list[str], urls: list[str]) -> Obj:
    return {"verbs": verbs, "nonResourceURLs": urls}


def _role(name: str, rules: list[Obj], *, labels: dict[str, str] | None = None,
          aggregate_from: str | None = None, labeled: bool = True) -> Obj:
    md: Obj = {"name": name}
    if labeled:
        md.update(annotations={AUTOUPDATE: "true"},
                  labels={"kubernetes.io/bootstrapping": "rbac-defaults", **(labels or {})})
    role: Obj = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                 "metadata": md, "rules": rules}
    if aggregate_from:
        role["aggregationRule"] = {"clusterRoleSelectors": [
            {"matchLabels": {f"rbac.authorization.k8s.io/aggregate-to-{aggregate_from}":
                             "true"}}]}
    return role


def _to(target: str) -> dict[str, str]:
    return {f"rbac.authorization.k8s.io/aggregate-to-{target}": "true"}


def _aggregate_to_edit() -> list[Obj]:
    return [
        _r(_READ, "", ["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets",
                       "services/proxy"]),
        _r("impersonate", "", "serviceaccounts"),
        _r(_RW, "", ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"]),
        _r("create", "", "pods/eviction"),
        _r(_RW, "", ["configmaps", "events", "persistentvolumeclaims", "replicationcontrollers",
                     "replicationcontrollers/scale", "secrets", "serviceaccounts", "services",
                     "services/proxy"]),
        _r("create", "", "serviceaccounts/token"),
        _r(_RW, "apps", ["daemonsets", "deployments", "deployments/rollback",
                         "deployments/scale", "replicasets", "replicasets/scale",
                         "statefulsets", "statefulsets/scale"]),
        _r(_RW, "autoscaling", "horizontalpodautoscalers"),
        _r(_RW, "batch", ["cronjobs", "jobs"]),
        _r(_RW, "extensions", ["daemonsets", "deployments", "deployments/rollback",
                               "deployments/scale", "ingresses", "networkpolicies",
                               "replicasets", "replicasets/scale",
                               "replicationcontrollers/scale"]),
        _r(_RW, "policy", "poddisruptionbudgets"),
        _r(_RW, "networking.k8s.io", ["ingresses", "networkpolicies"]),
        _r(_ALL_RW, "coordination.k8s.io", "leases"),
    ]


def _aggregate_to_view() -> list[Obj]:
    return [
        _r(_READ, "", ["configmaps", "endpoints", "persistentvolumeclaims",
                       "persistentvolumeclaims/status", "pods", "replicationcontrollers",
                       "replicationcontrollers/scale", "serviceaccounts", "services",
                       "services/status"]),
        _r(_READ, "", ["bindings", "events", "limitranges", "namespaces/status", "pods/log",
                       "pods/status", "replicationcontrollers/status", "resourcequotas",
                       "resourcequotas/status"]),
        _r(_READ, "", "namespaces"),
        _r(_READ, "discovery.k8s.io", "endpointslices"),
        _r(_READ, "apps", ["controllerrevisions", "daemonsets", "daemonsets/status",
                           "deployments", "deployments/scale", "deployments/status",
                           "replicasets", "replicasets/scale", "replicasets/status",
                           "statefulsets", "statefulsets/scale", "statefulsets/status"]),
        _r(_READ, "autoscaling", ["horizontalpodautoscalers",
                                  "horizontalpodautoscalers/status"]),
        _r(_READ, "batch", ["cronjobs", "cronjobs/status", "jobs", "jobs/status"]),
        _r(_READ, "extensions", ["daemonsets", "daemonsets/status", "deployments",
                                 "deployments/scale", "deployments/status", "ingresses",
                                 "ingresses/status", "networkpolicies", "replicasets",
                                 "replicasets/scale", "replicasets/status",
                                 "replicationcontrollers/scale"]),
        _r(_READ, "policy", ["poddisruptionbudgets", "poddisruptionbudgets/status"]),
        _r(_READ, "networking.k8s.io", ["ingresses", "ingresses/status", "networkpolicies"]),
    ]


def node_rules() -> list[Obj]:
    """system:node's rules: what the Node authorizer allows a node outside its graph."""
    return [
        _r("create", "authentication.k8s.io", "tokenreviews"),
        _r("create", "authorization.k8s.io", ["localsubjectaccessreviews",
                                              "subjectaccessreviews"]),
        _r(_READ, "", "services"),
        _r(["create", "get", "list", "watch"], "", "nodes"),
        _r(["patch", "update"], "", "nodes/status"),
        _r(["patch", "update"], "", "nodes"),
        _r(["create", "patch", "update"], "", "events"),
        _r(_READ, "", "pods"),
        _r(["create", "delete"], "", "pods"),
        _r(["patch", "update"], "", "pods/status"),
        _r("create", "", "pods/eviction"),
        _r(_READ, "", ["configmaps", "secrets"]),
        _r("get", "", ["persistentvolumeclaims", "persistentvolumes"]),
        _r("get", "", "endpoints"),
        _r(["create", "get", "list", "watch"], "certificates.k8s.io",
           "certificatesigningrequests"),
        _r(["create", "delete", "get", "patch", "update"], "coordination.k8s.io", "leases"),
        _r("get", "storage.k8s.io", "volumeattachments"),
        _r("create", "", "serviceaccounts/token"),
        _r(["get", "patch", "update"], "", "persistentvolumeclaims/status"),
        _r(_READ, "storage.k8s.io", "csidrivers"),
        _r(["create", "delete", "get", "patch", "update"], "storage.k8s.io", "csinodes"),
        _r(_READ, "node.k8s.io", "runtimeclasses"),
    ]


def cluster_roles() -> list[Obj]:
    return [
        _role("cluster-admin", [_r("*", "*", "*"), _urls(["*"], ["*"])]),
        _role("admin", [], aggregate_from="admin"),
        _role("edit", [], labels=_to("admin"), aggregate_from="edit"),
        _role("view", [], labels=_to("edit"), aggregate_from="view"),
        _role("system:aggregate-to-admin", [
            _r("create", "authorization.k8s.io", "localsubjectaccessreviews"),
            _r(_ALL_RW, "rbac.authorization.k8s.io", ["rolebindings", "roles"])],
            labels=_to("admin")),
        _role("system:aggregate-to-edit", _aggregate_to_edit(), labels=_to("edit")),
        _role("system:aggregate-to-view", _aggregate_to_view(), labels=_to("view")),
        _role("system:auth-delegator", [
            _r("create", "authentication.k8s.io", "tokenreviews"),
            _r("create", "authorization.k8s.io", "subjectaccessreviews")]),
        _role("system:basic-user", [
            _r("create", "authorization.k8s.io", ["selfsubjectaccessreviews",
                                                  "selfsubjectrulesreviews"]),
            _r("create", "authentication.k8s.io", "selfsubjectreviews")]),
        _role("system:discovery", [_urls(["get"], [
            "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi",
            "/openapi/*", "/readyz", "/version", "/version/"])]),
        _role("system:public-info-viewer", [_urls(["get"], [
            "/healthz", "/livez", "/readyz", "/version", "/version/"])]),
        _role("system:monitoring", [_urls(["get"], [
            "/healthz", "/healthz/*", "/livez", "/livez/*", "/metrics", "/metrics/slis",
            "/readyz", "/readyz/*"])]),
        _role("system:kube-dns", [_r(["list", "watch"], "", ["endpoints", "services"])]),
        _role("system:node", node_rules()),
        _role("system:node-proxier", [
            _r(["list", "watch"], "", ["endpoints", "services"]),
            _r(_READ, "", "nodes"),
            _r(["create", "patch", "update"], _EVENTS, "events"),
            _r(["list", "watch"], "discovery.k8s.io", "endpointslices")]),
        _role("system:kube-scheduler", [
            _r(["create", "patch", "update"], _EVENTS, "events"),
            _r("create", "coordination.k8s.io", "leases"),
            _r(["get", "update"], "coordination.k8s.io", "leases", ["kube-scheduler"]),
            _r(_READ, "", "nodes"),
            _r(["delete", "get", "list", "watch"], "", "pods"),
            _r("create", "", ["bindings", "pods/binding"]),
            _r(["patch", "update"], "", "pods/status"),
            _r(_READ, "", ["replicationcontrollers", "services"]),
            _r(_READ, ("apps", "extensions"), "replicasets"),
            _r(_READ, "apps", "statefulsets"),
            _r(_READ, "policy", "poddisruptionbudgets"),
            _r(_READ, "", ["persistentvolumeclaims", "persistentvolumes"]),
            _r("create", "authentication.k8s.io", "tokenreviews"),
            _r("create", "authorization.k8s.io", "subjectaccessreviews"),
            _r(_READ, "", "namespaces")]),
        _role("system:kube-controller-manager", [
            _r(["create", "patch", "update"], _EVENTS, "events"),
            _r("create", "coordination.k8s.io", "leases"),
            _r(["get", "update"], "coordination.k8s.io", "leases",
               ["kube-controller-manager"]),
            _r("create", "", ["secrets", "serviceaccounts"]),
            _r("delete", "", "secrets"),
            _r("get", "", ["configmaps", "namespaces", "secrets", "serviceaccounts"]),
            _r("update", "", ["secrets", "serviceaccounts"]),
            _r("create", "authentication.k8s.io", "tokenreviews"),
            _r("create", "authorization.k8s.io", "subjectaccessreviews"),
            _r(["list", "watch"], "*", "*"),
            _r("create", "", "serviceaccounts/token")]),
        _role("system:service-account-issuer-discovery", [_urls(["get"], [
            "/.well-known/openid-configuration", "/openid/v1/jwks"])]),
        # kubeadm's: CoreDNS reads services and their endpoints (knet's DNS likewise)
        _role("system:coredns", [
            _r(["list", "watch"], "", ["endpoints", "services", "pods", "namespaces"]),
            _r(["list", "watch"], "discovery.k8s.io", "endpointslices")], labeled=False),
        # knet's own: its kube-proxy names the pod behind each endpoint in flow records
        _role("knet:node-proxier-pods", [_r(_READ, "", "pods")], labeled=False),
        # knet's own: the node proxy process enforces NetworkPolicies (knet/policy/enforcer.py)
        _role("knet:node-proxier-netpol", [_r(_READ, "networking.k8s.io", "networkpolicies"),
                                           _r(_READ, "", "namespaces")], labeled=False),
        # knet's own: the node proxy is the mesh's data plane (ztunnel + waypoint in one) and
        # reads the routing and security kinds and namespace labels (ambient enrollment), as
        # Istio's do, and asks the mesh CA for its workloads' certificates (control/api/meshca.py)
        _role("knet:node-proxier-mesh", [
            _r(_READ, "", "namespaces"),
            _r(_READ, "gateway.networking.k8s.io", ["gateways"]),  # north-south (mesh/northsouth)
            _r(_READ, "networking.k8s.io", ["ingresses"]),
            _r(_READ, "gateway.networking.k8s.io", ["httproutes", "referencegrants"]),
            _r(_READ, "networking.istio.io", ["virtualservices", "destinationrules"]),
            _r(_READ, "security.istio.io", ["peerauthentications", "authorizationpolicies"]),
            _r("create", "mesh.knet.dev", "workloadcertificaterequests"),
            _r(["patch", "update"], "gateway.networking.k8s.io", "httproutes/status"),
            _r(["patch", "update"], "networking.istio.io", "virtualservices/status")],
            labeled=False),
    ]


def _binding(name: str, role: str, *subjects: tuple[str, str], labeled: bool = True) -> Obj:
    subs = []
    for kind, who in subjects:
        if kind == "ServiceAccount":
            ns, _, sa = who.partition("/")
            subs.append({"kind": kind, "name": sa, "namespace": ns})
        else:
            subs.append({"kind": kind, "apiGroup": "rbac.authorization.k8s.io", "name": who})
    md: Obj = {"name": name}
    if labeled:
        md.update(annotations={AUTOUPDATE: "true"},
                  labels={"kubernetes.io/bootstrapping": "rbac-defaults"})
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": md, "subjects": subs,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": role}}


def cluster_role_bindings() -> list[Obj]:
    auth, unauth = ("Group", "system:authenticated"), ("Group", "system:unauthenticated")
    return [
        _binding("cluster-admin", "cluster-admin", ("Group", "system:masters")),
        _binding("system:basic-user", "system:basic-user", auth),
        _binding("system:discovery", "system:discovery", auth),
        _binding("system:public-info-viewer", "system:public-info-viewer", auth, unauth),
        _binding("system:monitoring", "system:monitoring", ("Group", "system:monitoring")),
        _binding("system:kube-dns", "system:kube-dns", ("ServiceAccount", "kube-system/kube-dns")),
        _binding("system:node", "system:node"),     # no subjects: the Node authorizer decides
        _binding("system:node-proxier", "system:node-proxier", ("User", "system:kube-proxy")),
        _binding("system:kube-scheduler", "system:kube-scheduler",
                 ("User", "system:kube-scheduler")),
        _binding("system:kube-controller-manager", "system:kube-controller-manager",
                 ("User", "system:kube-controller-manager")),
        _binding("system:service-account-issuer-discovery",
                 "system:service-account-issuer-discovery", ("Group", "system:serviceaccounts")),
        # kubeadm's
        _binding("kubeadm:cluster-admins", "cluster-admin", ("Group", "kubeadm:cluster-admins"),
                 labeled=False),
        _binding("kubeadm:node-proxier", "system:node-proxier",
                 ("ServiceAccount", "kube-system/kube-proxy"), labeled=False),
        _binding("system:coredns", "system:coredns", ("ServiceAccount", "kube-system/coredns"),
                 labeled=False),
        _binding("knet:node-proxier-pods", "knet:node-proxier-pods",
                 ("User", "system:kube-proxy"), ("ServiceAccount", "kube-system/kube-proxy"),
                 labeled=False),
        _binding("knet:node-proxier-netpol", "knet:node-proxier-netpol",
                 ("User", "system:kube-proxy"), ("ServiceAccount", "kube-system/kube-proxy"),
                 labeled=False),
        # the node proxy (`knet proxy`, identity system:kube-proxy) reads and reports the mesh
        _binding("knet:node-proxier-mesh", "knet:node-proxier-mesh",
                 ("User", "system:kube-proxy"), ("ServiceAccount", "kube-system/kube-proxy"),
                 labeled=False),
    ]
