"""The table of API resources knet serves: kind, plural, group/version, scope, short names,
verbs, subresources. Discovery, routing, storage keys, the clients and kubectl all read it.

Storage keys: `/registry/<plural>/<namespace>/<name>` for namespaced resources and
`/registry/<plural>/<name>` for cluster-scoped ones (plurals are unique across groups here).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceInfo:
    kind: str
    plural: str
    group: str           # "" for the core group
    version: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    singular: str = field(default="")
    stored: bool = True  # False: a create-only review answered by control.api.reviews
    custom: bool = False  # defined by a CustomResourceDefinition (control.api.crd)
    # more versions serving the same objects (conversion None: only apiVersion differs);
    # `version` is the one objects are stored in
    served_versions: tuple[str, ...] = ()
    # the scale subresource of a custom kind: (specReplicasPath, statusReplicasPath,
    # labelSelectorPath), JSON paths like ".spec.replicas"
    scale_paths: tuple[str, str, str] | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def singular_name(self) -> str:
        return self.singular or self.kind.lower()

    def key(self, name: str, namespace: str | None = None) -> str:
        if self.namespaced:
            if not namespace:
                raise ValueError(f"{self.plural} is namespaced: a namespace is needed for {name}")
            return f"/registry/{self.plural}/{namespace}/{name}"
        return f"/registry/{self.plural}/{name}"

    def prefix(self, namespace: str | None = None) -> str:
        if self.namespaced and namespace:
            return f"/registry/{self.plural}/{namespace}/"
        return f"/registry/{self.plural}/"

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The REST path of the collection (or of one object if name is given)."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


_ALL = ("all",)
_RBAC = "rbac.authorization.k8s.io"
_AUTHZ = "authorization.k8s.io"
RESOURCES: tuple[ResourceInfo, ...] = (
    ResourceInfo("Namespace", "namespaces", "", "v1", False, ("ns",), subresources=("status",),
                 verbs=("create", "delete", "get", "list", "patch", "update", "watch")),
    ResourceInfo("Node", "nodes", "", "v1", False, ("no",), subresources=("status", "proxy")),
    ResourceInfo("Pod", "pods", "", "v1", True, ("po",), _ALL,
                 ("status", "log", "exec", "attach", "portforward", "proxy", "binding",
                  "eviction", "ephemeralcontainers")),
    ResourceInfo("Service", "services", "", "v1", True, ("svc",), _ALL, ("status", "proxy")),
    ResourceInfo("Endpoints", "endpoints", "", "v1", True, ("ep",), singular="endpoints"),
    ResourceInfo("ConfigMap", "configmaps", "", "v1", True, ("cm",)),
    ResourceInfo("Secret", "secrets", "", "v1", True),
    ResourceInfo("Event", "events", "", "v1", True, ("ev",)),
    ResourceInfo("PersistentVolumeClaim", "persistentvolumeclaims", "", "v1", True, ("pvc",),
                 subresources=("status",)),
    ResourceInfo("PersistentVolume", "persistentvolumes", "", "v1", False, ("pv",),
                 subresources=("status",)),
    ResourceInfo("ServiceAccount", "serviceaccounts", "", "v1", True, ("sa",),
                 subresources=("token",)),
    ResourceInfo("ReplicationController", "replicationcontrollers", "", "v1", True, ("rc",),
                 _ALL, ("status", "scale")),
    ResourceInfo("Binding", "bindings", "", "v1", True, verbs=("create",)),
    ResourceInfo("Deployment", "deployments", "apps", "v1", True, ("deploy",), _ALL,
                 ("status", "scale")),
    ResourceInfo("ReplicaSet", "replicasets", "apps", "v1", True, ("rs",), _ALL,
                 ("status", "scale")),
    ResourceInfo("DaemonSet", "daemonsets", "apps", "v1", True, ("ds",), _ALL, ("status",)),
    ResourceInfo("StatefulSet", "statefulsets", "apps", "v1", True, ("sts",), _ALL,
                 ("status", "scale")),
    ResourceInfo("ControllerRevision", "controllerrevisions", "apps", "v1", True),
    ResourceInfo("EndpointSlice", "endpointslices", "discovery.k8s.io", "v1", True),
    ResourceInfo("Job", "jobs", "batch", "v1", True, (), _ALL, ("status",)),
    ResourceInfo("CronJob", "cronjobs", "batch", "v1", True, ("cj",), _ALL, ("status",)),
    ResourceInfo("Lease", "leases", "coordination.k8s.io", "v1", True),
    ResourceInfo("StorageClass", "storageclasses", "storage.k8s.io", "v1", False, ("sc",)),
    ResourceInfo("TokenReview", "tokenreviews", "authentication.k8s.io", "v1", False,
                 verbs=("create",), stored=False),
    ResourceInfo("SelfSubjectReview", "selfsubjectreviews", "authentication.k8s.io", "v1",
                 False, verbs=("create",), stored=False),
    ResourceInfo("Role", "roles", _RBAC, "v1", True),
    ResourceInfo("ClusterRole", "clusterroles", _RBAC, "v1", False),
    ResourceInfo("RoleBinding", "rolebindings", _RBAC, "v1", True),
    ResourceInfo("ClusterRoleBinding", "clusterrolebindings", _RBAC, "v1", False),
    ResourceInfo("SubjectAccessReview", "subjectaccessreviews", _AUTHZ, "v1", False,
                 verbs=("create",), stored=False),
    ResourceInfo("SelfSubjectAccessReview", "selfsubjectaccessreviews", _AUTHZ, "v1", False,
                 verbs=("create",), stored=False),
    ResourceInfo("SelfSubjectRulesReview", "selfsubjectrulesreviews", _AUTHZ, "v1", False,
                 verbs=("create",), stored=False),
    ResourceInfo("LocalSubjectAccessReview", "localsubjectaccessreviews", _AUTHZ, "v1", True,
                 verbs=("create",), stored=False),
    ResourceInfo("CustomResourceDefinition", "customresourcedefinitions",
                 "apiextensions.k8s.io", "v1", False, ("crd", "crds"), ("api-extensions",),
                 ("status",)),
)

# networking.k8s.io and policy kinds, stored and served (apifix; behaviour comes later)
RESOURCES += (
    ResourceInfo("Ingress", "ingresses", "networking.k8s.io", "v1", True, ("ing",),
                 subresources=("status",)),
    ResourceInfo("IngressClass", "ingressclasses", "networking.k8s.io", "v1", False),
    ResourceInfo("NetworkPolicy", "networkpolicies", "networking.k8s.io", "v1", True,
                 ("netpol",)),
    ResourceInfo("PodDisruptionBudget", "poddisruptionbudgets", "policy", "v1", True,
                 ("pdb",), subresources=("status",)),
    # stored in v2, served in v1 too (control/models/autoscaling.py converts)
    ResourceInfo("HorizontalPodAutoscaler", "horizontalpodautoscalers", "autoscaling", "v2",
                 True, ("hpa",), _ALL, ("status",), served_versions=("v1",)),
)


# -- the mesh CA's kind (issue 15; control/api/meshca.py). The mesh's Gateway API and Istio
# kinds are CRDs installed at start (control/crds, control/models/meshkinds.py) -------------
RESOURCES += (
    ResourceInfo("WorkloadCertificateRequest", "workloadcertificaterequests", "mesh.knet.dev",
                 "v1", True, verbs=("create",), stored=False),
)


def by_plural(plural: str) -> ResourceInfo:
    for r in RESOURCES:
        if r.plural == plural:
            return r
    raise KeyError(f"unknown resource {plural!r}; known: "
                   + ", ".join(sorted(r.plural for r in RESOURCES)))


def by_kind(kind: str, api_version: str | None = None) -> ResourceInfo:
    for r in RESOURCES:
        if r.kind == kind and (api_version is None or r.api_version == api_version):
            return r
    where = f" in {api_version}" if api_version else ""
    raise KeyError(f"unknown kind {kind!r}{where}")


def groups() -> dict[str, list[str]]:
    """group name -> versions (core group under "")."""
    out: dict[str, list[str]] = {}
    for r in RESOURCES:
        versions = out.setdefault(r.group, [])
        if r.version not in versions:
            versions.append(r.version)
    return out


_KUBE_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Kubernetes' version order as a sort key: GA, then beta, then alpha, higher numbers
    first (v2 > v1 > v1beta2 > v1beta1 > v1alpha1), then other names alphabetically."""
    m = _KUBE_VERSION.match(version)
    if not m:
        return (3, 0, 0, version)
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    return (stage, -int(m.group(1)), -int(m.group(3) or 0), "")


CustomAdmit = Callable[["ResourceInfo", dict[str, Any], "dict[str, Any] | None"],
                       tuple[dict[str, Any], list[str]]]


class Registry:
    """The resources one API server serves: the built-ins above plus the kinds its
    CustomResourceDefinitions define (`control.api.crd` keeps those up to date from the store).
    One per ObjectService, not a module global, so servers in one process never share CRDs;
    the module functions above answer for the built-ins only. `generation` grows on each
    change so discovery and OpenAPI know when to rebuild."""

    def __init__(self, builtins: Iterable[ResourceInfo] = RESOURCES) -> None:
        self._builtins = tuple(builtins)
        self._custom: dict[str, tuple[ResourceInfo, CustomAdmit]] = {}   # by CRD name
        self._by_plural = {r.plural: r for r in self._builtins}
        self.generation = 0

    def all(self) -> tuple[ResourceInfo, ...]:
        return self._builtins + tuple(info for info, _ in self._custom.values())

    def set_custom(self, crd: str, info: ResourceInfo, admit: CustomAdmit) -> None:
        self._custom[crd] = (info, admit)
        self._reindex()

    def remove_custom(self, crd: str) -> None:
        if self._custom.pop(crd, None) is not None:
            self._reindex()

    def custom_admit(self, info: ResourceInfo) -> CustomAdmit | None:
        for known, admit in self._custom.values():
            if known.plural == info.plural:
                return admit
        return None

    def custom_schema(self, info: ResourceInfo) -> dict[str, Any] | None:
        """The openAPIV3Schema of a CRD-defined kind in `info`'s version (served in /openapi
        for kubectl)."""
        kind = self.custom_admit(info)
        own = getattr(kind, "by_version", {}).get(info.version, kind)
        return getattr(own, "schema", None)

    def _reindex(self) -> None:
        self._by_plural = {r.plural: r for r in self.all()}
        self.generation += 1

    def taken(self, plural: str, crd: str) -> bool:
        """Is `plural` served already by a built-in or by another CRD than `crd`?"""
        info = self._by_plural.get(plural)
        return info is not None and not (info.custom and self._custom.get(crd, (None,))[0]
                                         == info)

    def by_plural(self, plural: str) -> ResourceInfo:
        info = self._by_plural.get(plural)
        if info is None:
            raise KeyError(f"unknown resource {plural!r}")
        return info

    def by_kind(self, kind: str, api_version: str | None = None) -> ResourceInfo:
        for r in self.all():
            if r.kind == kind and (api_version is None or r.api_version == api_version):
                return r
        where = f" in {api_version}" if api_version else ""
        raise KeyError(f"unknown kind {kind!r}{where}")

    def views(self) -> tuple[ResourceInfo, ...]:
        """Every (resource, served version): `all()` plus one view per extra served version."""
        out: list[ResourceInfo] = []
        for r in self.all():
            out.append(r)
            out.extend(self._view(r, v) for v in r.served_versions)
        return tuple(out)

    def view(self, info: ResourceInfo, version: str) -> ResourceInfo | None:
        """`info` as served in `version` (itself for its storage version), or None."""
        if version == info.version:
            return info
        if version in info.served_versions:
            return self._view(info, version)
        return None

    def _view(self, info: ResourceInfo, version: str) -> ResourceInfo:
        # a CRD version declares its own subresources (the CustomKind of that version knows)
        own = getattr(self.custom_admit(info), "by_version", {}).get(version)
        subs = getattr(own, "subresources", info.subresources)
        return replace(info, version=version, served_versions=(), subresources=subs,
                       scale_paths=info.scale_paths if "scale" in subs else None)

    def groups(self) -> dict[str, list[str]]:
        """group -> served versions, the preferred (by Kubernetes' version priority) first."""
        out: dict[str, list[str]] = {}
        for r in self.views():
            versions = out.setdefault(r.group, [])
            if r.version not in versions:
                versions.append(r.version)
        for group, versions in out.items():
            if group:            # the built-in groups keep their order; CRDs' v1 before v1beta1
                versions.sort(key=version_priority)
        return out
