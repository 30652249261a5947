"""Just enough of Kubernetes' protobuf encoding to accept what kubectl's typed generators
send: `kubectl create namespace|configmap|secret|deployment|service|job|cronjob|
serviceaccount|token` and `kubectl auth whoami` post
`application/vnd.kubernetes.protobuf` and never fall back to JSON.

The envelope is the magic `k8s\\x00` + a `runtime.Unknown` {typeMeta, raw}; `raw` is the
object. A table of message schemas (field number -> JSON name and type, from
k8s.io/api's generated.proto) covers the fields those generators set; fields outside it are
skipped. Go sends zero values for non-pointer fields, so "", 0 and false are dropped unless
the field is a pointer (`replicas: 0` survives). Other kinds are a 415 that says to use JSON.
"""

from __future__ import annotations

import base64
from typing import Any

from control.api.protobuf_pod import POD_SCHEMAS
from control.errors import BadRequest, UnsupportedMedia

__all__ = ["MAGIC", "decode_object"]

MAGIC = b"k8s\x00"
Fields = list[tuple[int, int, Any]]      # (field number, wire type, value)
# type codes: s string, i int, i* int pointer, b bool, b* bool pointer, [s] repeated string,
# {s} map string->string, {b} map string->bytes (base64), {q} map string->Quantity,
# ios IntOrString, NAME message, [NAME] repeated message.
_SCHEMAS: dict[str, dict[int, tuple[str, str]]] = {
    "ObjectMeta": {1: ("name", "s"), 2: ("generateName", "s"), 3: ("namespace", "s"),
                   11: ("labels", "{s}"), 12: ("annotations", "{s}"),
                   13: ("ownerReferences", "[OwnerReference]"), 14: ("finalizers", "[s]")},
    # `kubectl create job --from=cronjob/X` names the CronJob as the Job's controller
    "OwnerReference": {1: ("kind", "s"), 3: ("name", "s"), 4: ("uid", "s"),
                       5: ("apiVersion", "s"), 6: ("controller", "b*"),
                       7: ("blockOwnerDeletion", "b*")},
    "Namespace": {1: ("metadata", "ObjectMeta"), 2: ("spec", "NamespaceSpec")},
    "NamespaceSpec": {1: ("finalizers", "[s]")},
    "ConfigMap": {1: ("metadata", "ObjectMeta"), 2: ("data", "{s}"),
                  3: ("binaryData", "{b}"), 4: ("immutable", "b*")},
    "Secret": {1: ("metadata", "ObjectMeta"), 2: ("data", "{b}"), 3: ("type", "s"),
               4: ("stringData", "{s}"), 5: ("immutable", "b*")},
    "LabelSelector": {1: ("matchLabels", "{s}"),
                      2: ("matchExpressions", "[LabelSelectorRequirement]")},
    "LabelSelectorRequirement": {1: ("key", "s"), 2: ("operator", "s"), 3: ("values", "[s]")},
    "Deployment": {1: ("metadata", "ObjectMeta"), 2: ("spec", "DeploymentSpec")},
    "DeploymentSpec": {1: ("replicas", "i*"), 2: ("selector", "LabelSelector"),
                       3: ("template", "PodTemplateSpec"), 4: ("strategy", "Strategy"),
                       5: ("minReadySeconds", "i"), 6: ("revisionHistoryLimit", "i*"),
                       7: ("paused", "b"), 9: ("progressDeadlineSeconds", "i*")},
    "Strategy": {1: ("type", "s"), 2: ("rollingUpdate", "RollingUpdate")},
    "RollingUpdate": {1: ("maxUnavailable", "ios"), 2: ("maxSurge", "ios")},
    "PodTemplateSpec": {1: ("metadata", "ObjectMeta"), 2: ("spec", "PodSpec")},
    "PodSpec": {2: ("containers", "[Container]"), 3: ("restartPolicy", "s"),
                4: ("terminationGracePeriodSeconds", "i*"), 6: ("dnsPolicy", "s"),
                7: ("nodeSelector", "{s}"), 8: ("serviceAccountName", "s"),
                10: ("nodeName", "s"), 11: ("hostNetwork", "b"),
                20: ("initContainers", "[Container]")},
    "Container": {1: ("name", "s"), 2: ("image", "s"), 3: ("command", "[s]"),
                  4: ("args", "[s]"), 5: ("workingDir", "s"), 6: ("ports", "[ContainerPort]"),
                  7: ("env", "[EnvVar]"), 8: ("resources", "Resources"),
                  13: ("terminationMessagePath", "s"), 14: ("imagePullPolicy", "s"),
                  16: ("stdin", "b"), 18: ("tty", "b"), 20: ("terminationMessagePolicy", "s")},
    "ContainerPort": {1: ("name", "s"), 2: ("hostPort", "i"), 3: ("containerPort", "i"),
                      4: ("protocol", "s"), 5: ("hostIP", "s")},
    "EnvVar": {1: ("name", "s"), 2: ("value", "s")},
    "Resources": {1: ("limits", "{q}"), 2: ("requests", "{q}")},
    "Service": {1: ("metadata", "ObjectMeta"), 2: ("spec", "ServiceSpec")},
    "ServiceSpec": {1: ("ports", "[ServicePort]"), 2: ("selector", "{s}"),
                    3: ("clusterIP", "s"), 4: ("type", "s"), 5: ("externalIPs", "[s]"),
                    7: ("sessionAffinity", "s"), 10: ("externalName", "s")},
    "ServicePort": {1: ("name", "s"), 2: ("protocol", "s"), 3: ("port", "i"),
                    4: ("targetPort", "ios"), 5: ("nodePort", "i")},
    "Job": {1: ("metadata", "ObjectMeta"), 2: ("spec", "JobSpec")},
    "JobSpec": {1: ("parallelism", "i*"), 2: ("completions", "i*"),
                3: ("activeDeadlineSeconds", "i*"), 4: ("selector", "LabelSelector"),
                5: ("manualSelector", "b*"), 6: ("template", "PodTemplateSpec"),
                7: ("backoffLimit", "i*"), 8: ("ttlSecondsAfterFinished", "i*"),
                10: ("suspend", "b*")},
    "CronJob": {1: ("metadata", "ObjectMeta"), 2: ("spec", "CronJobSpec")},
    "CronJobSpec": {1: ("schedule", "s"), 2: ("startingDeadlineSeconds", "i*"),
                    3: ("concurrencyPolicy", "s"), 4: ("suspend", "b*"),
                    5: ("jobTemplate", "JobTemplateSpec"),
                    6: ("successfulJobsHistoryLimit", "i*"),
                    7: ("failedJobsHistoryLimit", "i*"), 8: ("timeZone", "s")},
    "JobTemplateSpec": {1: ("metadata", "ObjectMeta"), 2: ("spec", "JobSpec")},
    "ServiceAccount": {1: ("metadata", "ObjectMeta"), 2: ("secrets", "[ObjectReference]"),
                       3: ("imagePullSecrets", "[LocalObjectReference]"),
                       4: ("automountServiceAccountToken", "b*")},
    "ObjectReference": {1: ("kind", "s"), 2: ("namespace", "s"), 3: ("name", "s"),
                        4: ("uid", "s"), 5: ("apiVersion", "s")},
    "LocalObjectReference": {1: ("name", "s")},
    "TokenRequest": {1: ("metadata", "ObjectMeta"), 2: ("spec", "TokenRequestSpec")},
    "TokenRequestSpec": {1: ("audiences", "[s]"), 3: ("boundObjectRef", "BoundObjectReference"),
                         4: ("expirationSeconds", "i*")},
    "BoundObjectReference": {1: ("kind", "s"), 2: ("apiVersion", "s"), 3: ("name", "s"),
                             4: ("uid", "s")},
    "SelfSubjectReview": {1: ("metadata", "ObjectMeta")},
    "TokenReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "TokenReviewSpec")},
    "TokenReviewSpec": {1: ("token", "s"), 2: ("audiences", "[s]")},
    # rbac.authorization.k8s.io/v1 (kubectl create role|clusterrole|rolebinding|...)
    "PolicyRule": {1: ("verbs", "[s]"), 2: ("apiGroups", "[s]"), 3: ("resources", "[s]"),
                   4: ("resourceNames", "[s]"), 5: ("nonResourceURLs", "[s]")},
    "AggregationRule": {1: ("clusterRoleSelectors", "[LabelSelector]")},
    "Role": {1: ("metadata", "ObjectMeta"), 2: ("rules", "[PolicyRule]")},
    "ClusterRole": {1: ("metadata", "ObjectMeta"), 2: ("rules", "[PolicyRule]"),
                    3: ("aggregationRule", "AggregationRule")},
    "Subject": {1: ("kind", "s"), 2: ("apiGroup", "s"), 3: ("name", "s"), 4: ("namespace", "s")},
    "RoleRef": {1: ("apiGroup", "s"), 2: ("kind", "s"), 3: ("name", "s")},
    "RoleBinding": {1: ("metadata", "ObjectMeta"), 2: ("subjects", "[Subject]"),
                    3: ("roleRef", "RoleRef")},
    "ClusterRoleBinding": {1: ("metadata", "ObjectMeta"), 2: ("subjects", "[Subject]"),
                           3: ("roleRef", "RoleRef")},
    # authorization.k8s.io/v1 reviews (kubectl auth can-i [--list]) and SelfSubjectReview
    "ResourceAttributes": {1: ("namespace", "s"), 2: ("verb", "s"), 3: ("group", "s"),
                           4: ("version", "s"), 5: ("resource", "s"), 6: ("subresource", "s"),
                           7: ("name", "s")},
    "NonResourceAttributes": {1: ("path", "s"), 2: ("verb", "s")},
    "SelfSubjectAccessReviewSpec": {1: ("resourceAttributes", "ResourceAttributes"),
                                    2: ("nonResourceAttributes", "NonResourceAttributes")},
    "SubjectAccessReviewSpec": {1: ("resourceAttributes", "ResourceAttributes"),
                                2: ("nonResourceAttributes", "NonResourceAttributes"),
                                3: ("user", "s"), 4: ("groups", "[s]"), 6: ("uid", "s")},
    "SelfSubjectAccessReview": {1: ("metadata", "ObjectMeta"),
                                2: ("spec", "SelfSubjectAccessReviewSpec")},
    "SubjectAccessReview": {1: ("metadata", "ObjectMeta"), 2: ("spec", "SubjectAccessReviewSpec")},
    "LocalSubjectAccessReview": {1: ("metadata", "ObjectMeta"),
                                 2: ("spec", "SubjectAccessReviewSpec")},
    "SelfSubjectRulesReview": {1: ("metadata", "ObjectMeta"),
                               2: ("spec", "SelfSubjectRulesReviewSpec")},
    "SelfSubjectRulesReviewSpec": {1: ("namespace", "s")},
}
_KINDS: tuple[str, ...] = (
    "Namespace", "ConfigMap", "Secret", "Deployment", "Service", "Job", "CronJob",
    "ServiceAccount", "TokenRequest", "SelfSubjectReview", "TokenReview",
    "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding", "SelfSubjectAccessReview",
    "SubjectAccessReview", "LocalSubjectAccessReview", "SelfSubjectRulesReview")


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf):
            raise BadRequest("protobuf body is truncated")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def _fields(buf: bytes) -> Fields:
    out: Fields = []
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            size, i = _varint(buf, i)
            if i + size > len(buf):
                raise BadRequest("protobuf body is truncated")
            value, i = buf[i:i + size], i + size
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        else:
            raise BadRequest(f"protobuf body uses unsupported wire type {wire}")
        out.append((num, wire, value))
    return out

# `kubectl create ingress` and `kubectl create pdb` (apifix): networking.k8s.io/v1 and
# policy/v1 field numbers from k8s.io/api's generated.proto; "" marks an inline struct.
_SCHEMAS.update({
    "Ingress": {1: ("metadata", "ObjectMeta"), 2: ("spec", "IngressSpec")},
    "IngressSpec": {1: ("defaultBackend", "IngressBackend"), 2: ("tls", "[IngressTLS]"),
                    3: ("rules", "[IngressRule]"), 4: ("ingressClassName", "s")},
    "IngressBackend": {3: ("resource", "TypedLocalObjectReference"),
                       4: ("service", "IngressServiceBackend")},
    "TypedLocalObjectReference": {1: ("apiGroup", "s"), 2: ("kind", "s"), 3: ("name", "s")},
    "IngressServiceBackend": {1: ("name", "s"), 2: ("port", "ServiceBackendPort")},
    "ServiceBackendPort": {1: ("name", "s"), 2: ("number", "i")},
    "IngressTLS": {1: ("hosts", "[s]"), 2: ("secretName", "s")},
    "IngressRule": {1: ("host", "s"), 2: ("", "IngressRuleValue")},
    "IngressRuleValue": {1: ("http", "HTTPIngressRuleValue")},
    "HTTPIngressRuleValue": {1: ("paths", "[HTTPIngressPath]")},
    "HTTPIngressPath": {1: ("path", "s"), 2: ("backend", "IngressBackend"),
                        3: ("pathType", "s")},
    "PodDisruptionBudget": {1: ("metadata", "ObjectMeta"), 2: ("spec", "PDBSpec")},
    "PDBSpec": {1: ("minAvailable", "ios"), 2: ("selector", "LabelSelector"),
                3: ("maxUnavailable", "ios"), 4: ("unhealthyPodEvictionPolicy", "s")},
})
_KINDS += ("Ingress", "PodDisruptionBudget")
_SCHEMAS.update(POD_SCHEMAS)            # kubectl debug --copy-to and node/NAME
_KINDS += ("Pod",)
# `kubectl autoscale` (kubectl 1.32 posts autoscaling/v1; v2 bodies get a 415 naming JSON)
_SCHEMAS.update({
    "HorizontalPodAutoscaler": {1: ("metadata", "ObjectMeta"), 2: ("spec", "HPASpecV1")},
    "HPASpecV1": {1: ("scaleTargetRef", "CrossVersionObjectReference"),
                  2: ("minReplicas", "i*"), 3: ("maxReplicas", "i"),
                  4: ("targetCPUUtilizationPercentage", "i*")},
    "CrossVersionObjectReference": {1: ("kind", "s"), 2: ("name", "s"), 3: ("apiVersion", "s")},
})
_KINDS += ("HorizontalPodAutoscaler",)
_ONLY_VERSION = {"HorizontalPodAutoscaler": "autoscaling/v1"}


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _scalar(kind: str, value: Any) -> Any:
    if kind == "s":
        return value.decode()
    if kind in ("i", "i*"):
        return _signed(value)
    if kind in ("b", "b*"):
        return bool(value)
    if kind == "ios":
        f = {n: v for n, _, v in _fields(value)}
        return f.get(3, b"").decode() if f.get(1) == 1 else _signed(f.get(2, 0))
    return _message(kind, value)


def _map_entry(kind: str, entry: bytes) -> tuple[str, Any]:
    f = {n: v for n, _, v in _fields(entry)}
    key, raw = f.get(1, b"").decode(), f.get(2, b"")
    if kind == "{b}":
        return key, base64.b64encode(raw).decode()
    if kind == "{q}":
        return key, {n: v for n, _, v in _fields(raw)}.get(1, b"").decode()
    return key, raw.decode()


def _message(name: str, buf: bytes) -> dict[str, Any]:
    schema = _SCHEMAS[name]
    out: dict[str, Any] = {}
    for num, _, value in _fields(buf):
        if num not in schema:
            continue
        key, kind = schema[num]
        if kind.startswith("{"):
            k, v = _map_entry(kind, value)
            out.setdefault(key, {})[k] = v
        elif kind.startswith("["):
            out.setdefault(key, []).append(_scalar(kind[1:-1], value))
        else:
            item = _scalar(kind, value)
            if item in ("", 0, False) and not kind.endswith("*") and kind != "ios":
                continue                      # Go's zero value: unset, as JSON omits it
            if not key:                       # an embedded struct, inline in JSON
                out.update(item)
                continue
            out[key] = item
    return out


def decode_object(body: bytes) -> dict[str, Any]:
    if not body.startswith(MAGIC):
        raise BadRequest("protobuf body lacks the k8s\\x00 prefix")
    unknown = {n: v for n, _, v in _fields(body[len(MAGIC):])}
    type_meta = {n: v for n, _, v in _fields(unknown.get(1, b""))}
    api_version = type_meta.get(1, b"").decode()
    kind = type_meta.get(2, b"").decode()
    if kind not in _KINDS or _ONLY_VERSION.get(kind, api_version) != api_version:
        raise UnsupportedMedia(
            f"{kind or 'this object'} ({api_version}): protobuf bodies are understood only for "
            f"{', '.join(_KINDS)}; send JSON or YAML instead, e.g. "
            "'kubectl create ... --dry-run=client -o yaml | kubectl apply -f -'")
    obj = _message(kind, unknown.get(2, b""))
    return {"apiVersion": api_version, "kind": kind, **obj}
