"""Validation of pod specs (pods and the templates of workloads), and of pod updates.

Checks follow k8s.io/kubernetes/pkg/apis/core/validation, field paths included; SCTP is
refused because knet's proxy and runtime only speak TCP and UDP. Fields Kubernetes defines
but knet does not act on are reported as warnings (`IGNORED_POD_FIELDS`), never dropped.
"""

from __future__ import annotations

from typing import Any

from control.models import names
from control.models.defaults import copy_json, default_pod_spec
from control.models.fielderrors import FieldErrors

__all__ = [
    "IGNORED_CONTAINER_FIELDS",
    "IGNORED_POD_FIELDS",
    "check_port_protocol",
    "validate_pod_spec",
    "validate_pod_update",
]

Obj = dict[str, Any]

# Pod-level fields knet keeps but does not act on, with what the warning says.
IGNORED_POD_FIELDS = {
    "affinity": "ignored by knet's scheduler, except nodeAffinity."
                "requiredDuringSchedulingIgnoredDuringExecution",
    "topologySpreadConstraints": "ignored by knet's scheduler (it spreads replicas of one "
                                 "owner across nodes)",
    "hostPID": "ignored: knet pods always have their own PID namespace",
    "hostIPC": "ignored: knet pods always have their own IPC namespace",
    "imagePullSecrets": "ignored: knet images are built in",
    "runtimeClassName": "ignored",
    "priorityClassName": "ignored: knet does not preempt",
    "preemptionPolicy": "ignored: knet does not preempt",
    "overhead": "ignored",
    "resourceClaims": "ignored",
    "os": "ignored",
    "hostUsers": "ignored",
    "dnsConfig": "ignored: knet writes resolv.conf from dnsPolicy",
    "activeDeadlineSeconds": "ignored: knet's kubelet does not enforce it",
    "readinessGates": "ignored: knet's kubelet computes Ready from the containers only",
}
IGNORED_CONTAINER_FIELDS = {
    "volumeDevices": "ignored: knet has no block devices",
    "resizePolicy": "ignored",
}
# securityContext fields the runtime acts on (the others are kept and warned about)
_POD_SECURITY = frozenset({"runAsUser", "runAsGroup", "runAsNonRoot"})
_CONTAINER_SECURITY = _POD_SECURITY | {"privileged", "readOnlyRootFilesystem", "capabilities"}
_LIMITS = frozenset({"cpu", "memory"})
_SUPPORTED_VOLUMES = frozenset({"configMap", "secret", "emptyDir", "projected",
                                "persistentVolumeClaim", "hostPath", "downwardAPI"})
_PROTOCOLS = ("TCP", "UDP", "SCTP")
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")
_RESTART = ("Always", "OnFailure", "Never")
_DNS = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_FIELD_REFS = ("metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels",
               "metadata.annotations", "spec.nodeName", "spec.serviceAccountName",
               "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs")
_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")


def check_port_protocol(errs: FieldErrors, path: str, value: Any) -> None:
    if value == "SCTP":
        errs.invalid(path, value, "SCTP is not supported by knet (TCP and UDP are)")
    else:
        errs.one_of(path, value, _PROTOCOLS)


def check_port_ref(errs: FieldErrors, path: str, port: Any) -> None:
    """A probe/targetPort port: a number 1-65535 or an IANA_SVC_NAME."""
    if isinstance(port, str) and not port.isdigit():
        errs.names(path, port, names.iana_svc_name)
    else:
        errs.int_range(path, int(port) if isinstance(port, str) else port, 1, 65535)


def _probe(errs: FieldErrors, path: str, probe: Any, kind: str) -> None:
    if not isinstance(probe, dict):
        errs.type_error(path, probe, "an object")
        return
    handlers = [h for h in _HANDLERS if probe.get(h) is not None]
    if not handlers:
        errs.required(path, "must specify a handler type")
    elif len(handlers) > 1:
        errs.forbidden(f"{path}.{handlers[1]}", "may not specify more than 1 handler type")
    for h in ("httpGet", "tcpSocket", "grpc"):
        action = probe.get(h)
        if isinstance(action, dict):
            if "port" not in action:
                errs.required(f"{path}.{h}.port")
            else:
                check_port_ref(errs, f"{path}.{h}.port", action["port"])
    http = probe.get("httpGet")
    if isinstance(http, dict) and http.get("scheme") not in (None, "HTTP", "HTTPS"):
        errs.not_supported(f"{path}.httpGet.scheme", http.get("scheme"), ("HTTP", "HTTPS"))
    for key in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold",
                "failureThreshold"):
        if key in probe:
            low = 0 if key == "initialDelaySeconds" else 1
            errs.int_range(f"{path}.{key}", probe[key], low)
    if kind != "readinessProbe" and probe.get("successThreshold", 1) != 1:
        errs.invalid(f"{path}.successThreshold", probe.get("successThreshold"), "must be 1")


def _ports(errs: FieldErrors, path: str, ports: Any, *, host_network: bool = False) -> None:
    port_names: set[str] = set()          # unique per container, as in Kubernetes
    for i, port in enumerate(errs.list_of(path, ports)):
        p = f"{path}[{i}]"
        if not isinstance(port, dict):
            errs.type_error(p, port, "an object")
            continue
        if "containerPort" not in port:
            errs.required(f"{p}.containerPort")
        else:
            errs.int_range(f"{p}.containerPort", port["containerPort"], 1, 65535)
        if port.get("hostPort") not in (None, 0) and errs.int_range(
                f"{p}.hostPort", port["hostPort"], 1, 65535) and not host_network:
            errs.warn(f"{p}.hostPort", "ignored: knet does not map host ports; use a "
                      "NodePort Service or hostNetwork")
        name = port.get("name")
        if name:
            if errs.names(f"{p}.name", name, names.iana_svc_name) and name in port_names:
                errs.duplicate(f"{p}.name", name)
            port_names.add(str(name))
        check_port_protocol(errs, f"{p}.protocol", port.get("protocol", "TCP"))


def _plain_var(var: Any) -> bool:
    """A valid `{name, value}` variable (the common case, checked without building paths)."""
    if type(var) is not dict or var.get("valueFrom") is not None:
        return False
    name = var.get("name")
    return type(name) is str and name != "" and not names.env_var_name(name)


def _env(errs: FieldErrors, path: str, env: Any) -> None:
    for i, var in enumerate(errs.list_of(path, env)):
        if _plain_var(var):
            continue
        p = f"{path}[{i}]"
        if not isinstance(var, dict):
            errs.type_error(p, var, "an object")
            continue
        if not var.get("name"):
            errs.required(f"{p}.name")
        else:
            errs.names(f"{p}.name", var["name"], names.env_var_name)
        source = var.get("valueFrom")
        if source is None:
            continue
        kinds = [k for k in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef")
                 if isinstance(source, dict) and source.get(k) is not None]
        if len(kinds) != 1:
            errs.invalid(f"{p}.valueFrom", source,
                         "must specify exactly one of: `fieldRef`, `resourceFieldRef`, "
                         "`configMapKeyRef` or `secretKeyRef`")
        elif var.get("value"):
            errs.invalid(f"{p}.valueFrom", source,
                         "may not be specified when `value` is not empty")
        elif kinds[0] == "fieldRef":
            _field_ref(errs, f"{p}.valueFrom.fieldRef", source["fieldRef"])
        elif kinds[0] == "resourceFieldRef":
            errs.warn(f"{p}.valueFrom.resourceFieldRef", 'not computed by knet: the variable '
                      'is set to "0"')
        elif kinds[0] in ("configMapKeyRef", "secretKeyRef"):
            ref = source[kinds[0]]
            if not isinstance(ref, dict) or not ref.get("key"):
                errs.required(f"{p}.valueFrom.{kinds[0]}.key")


def _field_ref(errs: FieldErrors, path: str, ref: Any) -> None:
    fp = ref.get("fieldPath") if isinstance(ref, dict) else None
    if not fp:
        errs.required(f"{path}.fieldPath")
        return
    if not isinstance(fp, str):
        errs.type_error(f"{path}.fieldPath", fp, "a string")
        return
    base = fp.split("[", 1)[0] if fp.endswith("']") else fp
    if base not in _FIELD_REFS or ("[" in fp and base not in ("metadata.labels",
                                                               "metadata.annotations")):
        errs.not_supported(f"{path}.fieldPath", fp, _FIELD_REFS)


def _unique_label(errs: FieldErrors, path: str, name: Any, seen: set[str]) -> None:
    """A required DNS-1123 label name, unique among `seen` (containers, volumes)."""
    if not name:
        errs.required(path)
    elif errs.names(path, name, names.dns1123_label):
        if name in seen:
            errs.duplicate(path, name)
        seen.add(name)


def _security_warnings(errs: FieldErrors, path: str, sc: Any, known: frozenset[str]) -> None:
    if isinstance(sc, dict):
        for key in sorted(k for k, v in sc.items() if k not in known and v is not None):
            errs.warn(f"{path}.{key}", "ignored by knet's runtime")


def _container(errs: FieldErrors, path: str, c: Any, volumes: set[str],
               seen: set[str], *, host_network: bool = False) -> None:
    if not isinstance(c, dict):
        errs.type_error(path, c, "an object")
        return
    _unique_label(errs, f"{path}.name", c.get("name"), seen)
    if not c.get("image"):
        errs.required(f"{path}.image")
    errs.one_of(f"{path}.imagePullPolicy", c.get("imagePullPolicy", "IfNotPresent"),
                _PULL_POLICIES)
    _ports(errs, f"{path}.ports", c.get("ports"), host_network=host_network)
    _env(errs, f"{path}.env", c.get("env"))
    for key in ("livenessProbe", "readinessProbe", "startupProbe"):
        if c.get(key) is not None:
            _probe(errs, f"{path}.{key}", c[key], key)
    _mounts(errs, f"{path}.volumeMounts", c.get("volumeMounts"), volumes)
    resources = c.get("resources")
    if isinstance(resources, dict) and isinstance(resources.get("limits"), dict):
        for key in sorted(set(resources["limits"]) - _LIMITS):
            errs.warn(f"{path}.resources.limits.{key}", "not enforced: knet enforces the cpu "
                      "and memory limits only")
    _security_warnings(errs, f"{path}.securityContext", c.get("securityContext"),
                       _CONTAINER_SECURITY)
    if not c.keys().isdisjoint(IGNORED_CONTAINER_FIELDS):
        for key, why in IGNORED_CONTAINER_FIELDS.items():
            if c.get(key):
                errs.warn(f"{path}.{key}", why)


def _mounts(errs: FieldErrors, path: str, mounts: Any, volumes: set[str]) -> None:
    paths: set[str] = set()
    for i, m in enumerate(errs.list_of(path, mounts)):
        p = f"{path}[{i}]"
        if not isinstance(m, dict):
            errs.type_error(p, m, "an object")
            continue
        if not m.get("name"):
            errs.required(f"{p}.name")
        elif not isinstance(m["name"], str):
            errs.type_error(f"{p}.name", m["name"], "a string")
        elif m["name"] not in volumes:
            errs.not_found(f"{p}.name", m["name"])
        mount_path = m.get("mountPath")
        if not mount_path:
            errs.required(f"{p}.mountPath")
        elif not isinstance(mount_path, str):
            errs.type_error(f"{p}.mountPath", mount_path, "a string")
        elif mount_path in paths:
            errs.invalid(f"{p}.mountPath", mount_path, "must be unique")
        else:
            paths.add(str(mount_path))


def _volumes(errs: FieldErrors, path: str, volumes: Any) -> set[str]:
    seen: set[str] = set()
    for i, v in enumerate(errs.list_of(path, volumes)):
        p = f"{path}[{i}]"
        if not isinstance(v, dict):
            errs.type_error(p, v, "an object")
            continue
        _unique_label(errs, f"{p}.name", v.get("name"), seen)
        sources = [k for k in v if k != "name" and v[k] is not None]
        if len(sources) > 1:
            errs.forbidden(f"{p}.{sources[1]}", "may not specify more than 1 volume type")
        for src in sources:
            if src not in _SUPPORTED_VOLUMES:
                errs.warn(f"{p}.{src}", "volume type not supported by knet: mounted as an "
                          "empty directory")
        if (v.get("emptyDir") or {}).get("medium") not in (None, "", "Memory"):
            errs.not_supported(f"{p}.emptyDir.medium", v["emptyDir"]["medium"], ("", "Memory"))
        cm = v.get("configMap")
        if isinstance(cm, dict) and not cm.get("name"):
            errs.required(f"{p}.configMap.name")
        secret = v.get("secret")
        if isinstance(secret, dict) and not secret.get("secretName"):
            errs.required(f"{p}.secret.secretName")
    return seen


def _tolerations(errs: FieldErrors, path: str, tolerations: Any) -> None:
    for i, t in enumerate(errs.list_of(path, tolerations)):
        p = f"{path}[{i}]"
        if not isinstance(t, dict):
            errs.type_error(p, t, "an object")
            continue
        op = t.get("operator", "Equal")
        if errs.one_of(f"{p}.operator", op, ("Equal", "Exists")) and op == "Exists" \
                and t.get("value"):
            errs.invalid(f"{p}.operator", op, "value must be empty when `operator` is 'Exists'")
        if op == "Equal" and not t.get("key"):
            errs.invalid(f"{p}.operator", op, "operator must be Exists when `key` is empty")
        if t.get("key"):
            errs.names(f"{p}.key", t["key"], names.qualified_name)
        effect = t.get("effect")
        if effect:
            errs.one_of(f"{p}.effect", effect, _EFFECTS)
        if t.get("tolerationSeconds") is not None and effect != "NoExecute":
            errs.invalid(f"{p}.effect", effect,
                         "effect must be 'NoExecute' when `tolerationSeconds` is set")


def validate_pod_spec(errs: FieldErrors, spec: Any, path: str, *, template: bool) -> None:
    """Validate a (defaulted) pod spec at `path`; `template` for workloads' templates."""
    if not isinstance(spec, dict):
        errs.required(path) if spec is None else errs.type_error(path, spec, "an object")
        return
    volumes = _volumes(errs, f"{path}.volumes", spec.get("volumes"))
    containers = errs.list_of(f"{path}.containers", spec.get("containers"))
    if not containers:
        errs.required(f"{path}.containers")
    seen: set[str] = set()
    for group, items in (("initContainers", spec.get("initContainers")),
                         ("containers", containers)):
        for i, c in enumerate(errs.list_of(f"{path}.{group}", items)):
            _container(errs, f"{path}.{group}[{i}]", c, volumes, seen,
                       host_network=spec.get("hostNetwork") is True)
    _pod_fields(errs, spec, path, template=template)
    if spec.get("hostNetwork") is True:
        _host_network_ports(errs, spec, path, template=template)


def _host_network_ports(errs: FieldErrors, spec: Obj, path: str, *, template: bool) -> None:
    """validateHostNetwork: a hostNetwork pod's ports are the node's (hostPort defaults to
    containerPort; a template may leave it 0 for the pod's defaulting)."""
    for group in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(group) or []):
            for j, port in enumerate((c.get("ports") or []) if isinstance(c, dict) else []):
                if not isinstance(port, dict):
                    continue
                hp, cp = port.get("hostPort") or 0, port.get("containerPort")
                if (not template or hp != 0) and hp != cp:
                    errs.invalid(f"{path}.{group}[{i}].ports[{j}].hostPort", hp,
                                 "must match `containerPort` when `hostNetwork` is true")


def _pod_fields(errs: FieldErrors, spec: Obj, path: str, *, template: bool) -> None:
    restart = spec.get("restartPolicy", "Always")
    if template and restart != "Always":
        errs.not_supported(f"{path}.restartPolicy", restart, ("Always",))
    else:
        errs.one_of(f"{path}.restartPolicy", restart, _RESTART)
    errs.one_of(f"{path}.dnsPolicy", spec.get("dnsPolicy", "ClusterFirst"), _DNS)
    if "terminationGracePeriodSeconds" in spec:
        errs.int_range(f"{path}.terminationGracePeriodSeconds",
                       spec["terminationGracePeriodSeconds"], 0)
    if spec.get("activeDeadlineSeconds") is not None:
        if template:
            errs.forbidden(f"{path}.activeDeadlineSeconds",
                           "activeDeadlineSeconds in ReplicaSet is not Supported")
        else:
            errs.int_range(f"{path}.activeDeadlineSeconds", spec["activeDeadlineSeconds"], 1)
    for key in ("hostname", "subdomain"):
        if spec.get(key):
            errs.names(f"{path}.{key}", spec[key], names.dns1123_label)
    selector = spec.get("nodeSelector")
    if isinstance(selector, dict):
        for k, v in selector.items():
            errs.names(f"{path}.nodeSelector", k, names.qualified_name)
            errs.names(f"{path}.nodeSelector", v, names.label_value)
    elif selector is not None:
        errs.type_error(f"{path}.nodeSelector", selector, "a map of labels")
    _tolerations(errs, f"{path}.tolerations", spec.get("tolerations"))
    _security_warnings(errs, f"{path}.securityContext", spec.get("securityContext"),
                       _POD_SECURITY)
    if not spec.keys().isdisjoint(IGNORED_POD_FIELDS):
        for key, why in IGNORED_POD_FIELDS.items():
            if spec.get(key) and not (key == "affinity" and _node_affinity_only(spec[key])):
                errs.warn(f"{path}.{key}", why)


def _node_affinity_only(affinity: Any) -> bool:
    """True if all the affinity says is a required node affinity (which the scheduler
    honours; DaemonSet pods carry one)."""
    if not isinstance(affinity, dict) or set(affinity) - {"nodeAffinity"}:
        return False
    node = affinity.get("nodeAffinity") or {}
    return isinstance(node, dict) and not set(node) - {
        "requiredDuringSchedulingIgnoredDuringExecution"}


def _images_and_mutables(spec: Obj, old_spec: Obj) -> Obj:
    """`spec` with the fields a pod update may change copied from `old_spec`."""
    out = dict(spec)
    for group in ("containers", "initContainers"):
        new_list, old_list = spec.get(group), old_spec.get(group)
        if isinstance(new_list, list) and isinstance(old_list, list) \
                and len(new_list) == len(old_list):
            out[group] = [{**n, "image": o.get("image")} if isinstance(n, dict)
                          and isinstance(o, dict) else n for n, o in zip(new_list, old_list)]
    for key in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"):
        out.pop(key, None)
    if not old_spec.get("nodeName"):
        out.pop("nodeName", None)          # binding an unbound pod is allowed
    return out


def validate_pod_update(errs: FieldErrors, new: Obj, old: Obj) -> None:
    spec = new.get("spec") or {}
    old_spec = copy_json(old.get("spec") or {})
    default_pod_spec(old_spec)       # a pod stored before a default existed is not "changed"
    mine = _images_and_mutables(spec, old_spec)
    theirs = {k: v for k, v in old_spec.items()
              if k not in ("activeDeadlineSeconds", "tolerations",
                           "terminationGracePeriodSeconds")}
    if not old_spec.get("nodeName"):
        theirs.pop("nodeName", None)
    if mine != theirs:
        changed = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        errs.forbidden("spec", "pod updates may not change fields other than "
                       "`spec.containers[*].image`, `spec.initContainers[*].image`, "
                       "`spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to "
                       "existing tolerations), `spec.terminationGracePeriodSeconds`; changed: "
                       + ", ".join(f"spec.{k}" for k in changed)
                       + "; delete and recreate the pod instead")
    old_tol = old_spec.get("tolerations") or []
    new_tol = spec.get("tolerations") or []
    if isinstance(new_tol, list) and any(t not in new_tol for t in old_tol):
        errs.forbidden("spec.tolerations", "existing toleration can not be modified except "
                       "its tolerationSeconds")
    old_deadline = old_spec.get("activeDeadlineSeconds")
    new_deadline = spec.get("activeDeadlineSeconds")
    if old_deadline is not None and (new_deadline is None or (
            isinstance(new_deadline, int) and new_deadline > old_deadline)):
        errs.invalid("spec.activeDeadlineSeconds", new_deadline,
                     "must be less than or equal to the previous value")
