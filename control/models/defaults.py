"""Kubernetes defaulting, applied in place to wire dicts before validation.

Mirrors SetDefaults_* of k8s.io/kubernetes/pkg/apis/{core,apps}/v1 for the fields knet's
users see (`kubectl get -o yaml` shows the same values a real cluster would), plus the pod
status a new pod starts with (Pending, qosClass). Unlike Kubernetes' DefaultTolerationSeconds
admission, no 300 s not-ready/unreachable tolerations are added: knet's node lifecycle
controller evicts after its own short grace so labs see failover quickly.
Plain dict code: it runs on every write. A malformed value is left alone for validation to
report with its field path.
"""

from __future__ import annotations

from typing import Any

from control.models import batchdefaults, networking
from control.models.autoscaling import AUTOSCALING_DEFAULTS
from control.models.storagedefaults import STORAGE_DEFAULTS, default_statefulset_extra

__all__ = ["NAMESPACE_NAME_LABEL", "apply_defaults", "copy_json", "default_pod_spec",
           "default_status"]

Obj = dict[str, Any]

_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
_PROBE_DEFAULTS = (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1),
                   ("failureThreshold", 3))


def copy_json(value: Any) -> Any:
    """A deep copy of JSON data (dicts, lists, scalars), ~5x faster than copy.deepcopy:
    scalars are not recursed into, and shared sub-objects come out unshared."""
    kind = type(value)
    if kind is dict:
        return {k: copy_json(v) if type(v) in _NESTED else v for k, v in value.items()}
    if kind is list:
        return [copy_json(v) if type(v) in _NESTED else v for v in value]
    if isinstance(value, dict):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) for v in value]
    return value


_NESTED = frozenset({dict, list})


def _dict(parent: Obj, key: str) -> Obj | None:
    """parent[key] if it is a dict (created if absent); None if it holds something else."""
    value = parent.get(key)
    if value is None:
        value = parent[key] = {}
    return value if isinstance(value, dict) else None


def _dicts(value: Any) -> list[Obj]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _image_pull_policy(image: Any) -> str:
    """Always for the tag `latest` (also implied by no tag and no digest), else
    IfNotPresent: SetDefaults_Container's reading of parsers.ParseImageName."""
    if not isinstance(image, str):
        return "IfNotPresent"
    name, digest, _ = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ("" if digest else "latest")
    return "Always" if tag == "latest" else "IfNotPresent"


def _default_probe(probe: Obj) -> None:
    for key, value in _PROBE_DEFAULTS:
        probe.setdefault(key, value)
    http = probe.get("httpGet")
    if isinstance(http, dict):
        http.setdefault("path", "/")
        http.setdefault("scheme", "HTTP")


def _default_container(c: Obj, *, pod: bool) -> None:
    c.setdefault("imagePullPolicy", _image_pull_policy(c.get("image")))
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    res = _dict(c, "resources")
    if pod and res is not None and isinstance(res.get("limits"), dict):
        requests = _dict(res, "requests")
        if requests is not None:
            for k, v in res["limits"].items():
                requests.setdefault(k, v)
    for port in _dicts(c.get("ports")):
        port.setdefault("protocol", "TCP")
    for key in _PROBES:
        if isinstance(c.get(key), dict):
            _default_probe(c[key])
    for env in _dicts(c.get("env")):
        source = env.get("valueFrom")
        if isinstance(source, dict) and isinstance(source.get("fieldRef"), dict):
            source["fieldRef"].setdefault("apiVersion", "v1")


def _default_volume(v: Obj) -> None:
    sources = [k for k in v if k != "name"]
    if not sources:
        v["emptyDir"] = {}
    for key in ("configMap", "secret", "downwardAPI", "projected"):
        if isinstance(v.get(key), dict):
            v[key].setdefault("defaultMode", 420)
    if isinstance(v.get("hostPath"), dict):
        v["hostPath"].setdefault("type", "")
    projected = v.get("projected")
    for source in _dicts(projected.get("sources") if isinstance(projected, dict) else None):
        token = source.get("serviceAccountToken")
        if isinstance(token, dict):
            token.setdefault("expirationSeconds", 3600)


def default_pod_spec(spec: Obj, *, pod: bool = True) -> None:
    """SetDefaults_PodSpec (pods and templates alike); `pod`: also what SetDefaults_Pod adds
    to pods only (enableServiceLinks, requests from limits), never to templates."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    if spec.get("securityContext") is None:
        spec["securityContext"] = {}
    if pod:
        spec.setdefault("enableServiceLinks", True)
    for c in _dicts(spec.get("containers")) + _dicts(spec.get("initContainers")):
        _default_container(c, pod=pod)
        if spec.get("hostNetwork") is True:   # the node's ports: hostPort = containerPort
            for port in _dicts(c.get("ports")):
                if not port.get("hostPort") and port.get("containerPort") is not None:
                    port["hostPort"] = port["containerPort"]
    for v in _dicts(spec.get("volumes")):
        _default_volume(v)


def _qos_class(spec: Obj) -> str:
    containers = _dicts(spec.get("containers"))
    resources = [c["resources"] for c in containers if isinstance(c.get("resources"), dict)]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    for r in resources:
        limits, requests = r.get("limits"), r.get("requests") or {}
        if not isinstance(limits, dict) or not isinstance(requests, dict):
            return "Burstable"
        if not ("cpu" in limits and "memory" in limits) or any(
                str(requests.get(k, limits[k])) != str(limits[k]) for k in ("cpu", "memory")):
            return "Burstable"
    return "Guaranteed"


def _default_pod(obj: Obj, old: Obj | None) -> None:
    spec = _dict(obj, "spec")
    if spec is None:
        return
    default_pod_spec(spec)
    if old is not None:
        return
    status = _dict(obj, "status")
    if status is not None:
        status.setdefault("phase", "Pending")
        status.setdefault("qosClass", _qos_class(spec))


def _default_template(spec: Obj) -> None:
    template = spec.get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        default_pod_spec(template["spec"], pod=False)


def _default_deployment(obj: Obj, old: Obj | None) -> None:
    spec = _dict(obj, "spec")
    if spec is None:
        return
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    _default_strategy(spec, "strategy", maxUnavailable="25%", maxSurge="25%")
    _default_template(spec)


def _default_strategy(spec: Obj, key: str, **rolling: Any) -> None:
    """type RollingUpdate, and its rollingUpdate parameters when that is the type."""
    strategy = _dict(spec, key)
    if strategy is None:
        return
    strategy.setdefault("type", "RollingUpdate")
    params = _dict(strategy, "rollingUpdate") if strategy["type"] == "RollingUpdate" else None
    if params is not None:
        for name, value in rolling.items():
            params.setdefault(name, value)


def _default_daemonset(obj: Obj, old: Obj | None) -> None:
    spec = _dict(obj, "spec")
    if spec is None:
        return
    _default_strategy(spec, "updateStrategy", maxUnavailable=1, maxSurge=0)
    spec.setdefault("revisionHistoryLimit", 10)
    _default_template(spec)


def _default_statefulset(obj: Obj, old: Obj | None) -> None:
    spec = _dict(obj, "spec")
    if spec is None:
        return
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    spec.setdefault("revisionHistoryLimit", 10)
    _default_strategy(spec, "updateStrategy", partition=0)
    default_statefulset_extra(obj, old)     # retention policy, claim templates (storage.py)
    _default_template(spec)


def _default_job_spec(spec: Obj) -> None:
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy",
                    "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed")
    _default_template(spec)


def _default_job(obj: Obj, old: Obj | None) -> None:
    spec = _dict(obj, "spec")
    if spec is None:
        return
    _default_job_spec(spec)
    if old is None:
        batchdefaults.generate_job_selector(obj)
    labels = _labels_of(spec.get("template"))
    md = obj.get("metadata")
    if isinstance(labels, dict) and labels and isinstance(md, dict) and not md.get("labels"):
        md["labels"] = dict(labels)


def _default_cronjob(obj: Obj, old: Obj | None) -> None:
    spec = _dict(obj, "spec")
    if spec is None:
        return
    spec.setdefault("concurrencyPolicy", "Allow")
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)
    template = spec.get("jobTemplate")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        _default_template(template["spec"])


def _default_replicaset(obj: Obj, old: Obj | None) -> None:
    spec = _dict(obj, "spec")
    if spec is None:
        return
    spec.setdefault("replicas", 1)
    _default_template(spec)


def _default_rc(obj: Obj, old: Obj | None) -> None:
    spec = _dict(obj, "spec")
    if spec is None:
        return
    spec.setdefault("replicas", 1)
    labels = _labels_of(spec.get("template"))
    if labels and isinstance(labels, dict):
        if not spec.get("selector"):
            spec["selector"] = dict(labels)
        md = obj.get("metadata")
        if isinstance(md, dict) and not md.get("labels"):
            md["labels"] = dict(labels)
    _default_template(spec)


def _labels_of(template: Any) -> Any:
    md = template.get("metadata") if isinstance(template, dict) else None
    return md.get("labels") if isinstance(md, dict) else None


def _default_service(obj: Obj, old: Obj | None) -> None:
    """SetDefaults_Service, the IP families the registry fills in for a single-stack IPv4
    cluster, and the status every Service has (`loadBalancer: {}`)."""
    spec = _dict(obj, "spec")
    if spec is None:
        return
    if not spec.get("type"):
        spec["type"] = "ClusterIP"
    kind = spec["type"]
    if not spec.get("sessionAffinity"):
        spec["sessionAffinity"] = "None"
    _default_affinity(spec)
    for port in _dicts(spec.get("ports")):
        port.setdefault("protocol", "TCP")
        if port.get("targetPort") in (None, 0, "") and "port" in port:
            port["targetPort"] = port["port"]
    if kind in ("NodePort", "LoadBalancer") or spec.get("externalIPs"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if kind in ("ClusterIP", "NodePort", "LoadBalancer"):
        spec.setdefault("internalTrafficPolicy", "Cluster")
    if kind == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    if old is not None:
        _keep_allocated(spec, old.get("spec") or {})
    if kind != "ExternalName":
        headless_selectorless = spec.get("clusterIP") == "None" and not spec.get("selector")
        spec.setdefault("ipFamilyPolicy",
                        "RequireDualStack" if headless_selectorless else "SingleStack")
        spec.setdefault("ipFamilies", ["IPv4"])
    default_status("services", obj)


def _default_affinity(spec: Obj) -> None:
    """None clears sessionAffinityConfig; ClientIP without a timeout gets 10800 s."""
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        cfg = spec.get("sessionAffinityConfig")
        client = cfg.get("clientIP") if isinstance(cfg, dict) else None
        if cfg is not None and not isinstance(cfg, dict) or \
                client is not None and not isinstance(client, dict):
            return                                   # malformed: validation says so
        if client is None or client.get("timeoutSeconds") is None:
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": 10800}}


def _keep_allocated(spec: Obj, old_spec: Obj) -> None:
    """An update that leaves out clusterIP/nodePort keeps the allocated ones (as Kubernetes'
    patchAllocatedValues does), so `kubectl replace` of the original YAML works."""
    keep_ip = spec.get("type") != "ExternalName" and old_spec.get("clusterIP")
    if keep_ip and not spec.get("clusterIP") and not spec.get("clusterIPs"):
        spec["clusterIP"] = old_spec["clusterIP"]
        spec["clusterIPs"] = list(old_spec.get("clusterIPs") or [old_spec["clusterIP"]])
    if spec.get("type") not in ("NodePort", "LoadBalancer"):
        return
    allocated = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                 for p in _dicts(old_spec.get("ports")) if p.get("nodePort")}
    for port in _dicts(spec.get("ports")):
        key = (port.get("port"), port.get("protocol"))
        if not port.get("nodePort") and key in allocated:
            port["nodePort"] = allocated[key]


def _default_endpoint_ports(ports: Any) -> None:
    for port in _dicts(ports):
        port.setdefault("protocol", "TCP")


def _default_endpoints(obj: Obj, old: Obj | None) -> None:
    for subset in _dicts(obj.get("subsets")):
        _default_endpoint_ports(subset.get("ports"))


def _default_endpointslice(obj: Obj, old: Obj | None) -> None:
    _default_endpoint_ports(obj.get("ports"))


NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def _default_namespace(obj: Obj, old: Obj | None) -> None:
    """SetDefaults_Namespace: the `kubernetes.io/metadata.name` label, set to the name on
    every write (a user cannot change or remove it)."""
    md = obj.get("metadata")
    if isinstance(md, dict) and md.get("name") and isinstance(md["name"], str):
        labels = md.get("labels")
        if labels is None:
            labels = md["labels"] = {}
        if isinstance(labels, dict):
            labels[NAMESPACE_NAME_LABEL] = md["name"]
    spec = _dict(obj, "spec")
    if spec is not None and old is None:
        spec.setdefault("finalizers", ["kubernetes"])
    default_status("namespaces", obj)


def default_status(resource: str, obj: Obj) -> None:
    """The status defaults, also applied to writes of the status subresource: a namespace's
    phase, a Service's (always present) `loadBalancer`."""
    if resource not in ("namespaces", "services"):
        return
    status = _dict(obj, "status")
    if status is None:
        return
    if resource == "namespaces":
        status.setdefault("phase", "Active")
    elif status.get("loadBalancer") is None:
        status["loadBalancer"] = {}


def _default_secret(obj: Obj, old: Obj | None) -> None:
    obj.setdefault("type", "Opaque")


_BY_RESOURCE = {
    "pods": _default_pod, "deployments": _default_deployment,
    "replicasets": _default_replicaset, "replicationcontrollers": _default_rc,
    "services": _default_service, "endpoints": _default_endpoints,
    "endpointslices": _default_endpointslice, "namespaces": _default_namespace,
    "secrets": _default_secret, "daemonsets": _default_daemonset,
    "statefulsets": _default_statefulset, "jobs": _default_job, "cronjobs": _default_cronjob,
    **networking.DEFAULTS, **STORAGE_DEFAULTS, **AUTOSCALING_DEFAULTS,
}


def apply_defaults(resource: str, obj: Obj, *, old: Obj | None = None) -> None:
    """Fill in Kubernetes' defaults for `resource` in place (`old` is set on updates)."""
    fn = _BY_RESOURCE.get(resource)
    if fn is not None:
        fn(obj, old)
