"""The protobuf message schemas of a core/v1 Pod, for the Pods kubectl posts as protobuf:
`kubectl debug --copy-to` (a copy of a running pod: volumes, projected service account
tokens, security contexts, tolerations, probes if kept) and `kubectl debug node/NAME`
(hostPath `/` at /host, host namespaces, a toleration of everything).

Field numbers and pointer-ness are those of k8s.io/api core/v1 generated.proto and types.go
(`*` marks a Go pointer, whose zero value is kept); `""` as a name marks an embedded struct
that JSON inlines (a Volume's VolumeSource, a Probe's handler). Read by control.api.protobuf
with its other tables. Status is never read: a create ignores it.
"""

from __future__ import annotations

__all__ = ["POD_SCHEMAS"]

_LOCAL_REF = ("", "LocalObjectReference")      # LocalObjectReference embedded: `name`
_ACTIONS = {1: ("exec", "ExecAction"), 2: ("httpGet", "HTTPGetAction"),
            3: ("tcpSocket", "TCPSocketAction")}
_CONTAINER = {1: ("name", "s"), 2: ("image", "s"), 3: ("command", "[s]"), 4: ("args", "[s]"),
              5: ("workingDir", "s"), 6: ("ports", "[ContainerPort]"),
              7: ("env", "[FullEnvVar]"), 8: ("resources", "Resources"),
              9: ("volumeMounts", "[VolumeMount]"), 10: ("livenessProbe", "Probe"),
              11: ("readinessProbe", "Probe"), 12: ("lifecycle", "Lifecycle"),
              13: ("terminationMessagePath", "s"), 14: ("imagePullPolicy", "s"),
              15: ("securityContext", "SecurityContext"), 16: ("stdin", "b"),
              17: ("stdinOnce", "b"), 18: ("tty", "b"), 19: ("envFrom", "[EnvFromSource]"),
              20: ("terminationMessagePolicy", "s"), 22: ("startupProbe", "Probe"),
              24: ("restartPolicy", "s")}

POD_SCHEMAS: dict[str, dict[int, tuple[str, str]]] = {
    "Pod": {1: ("metadata", "ObjectMeta"), 2: ("spec", "FullPodSpec")},
    "FullPodSpec": {
        1: ("volumes", "[Volume]"), 2: ("containers", "[FullContainer]"),
        3: ("restartPolicy", "s"), 4: ("terminationGracePeriodSeconds", "i*"),
        5: ("activeDeadlineSeconds", "i*"), 6: ("dnsPolicy", "s"), 7: ("nodeSelector", "{s}"),
        8: ("serviceAccountName", "s"), 9: ("serviceAccount", "s"), 10: ("nodeName", "s"),
        11: ("hostNetwork", "b"), 12: ("hostPID", "b"), 13: ("hostIPC", "b"),
        14: ("securityContext", "PodSecurityContext"), 16: ("hostname", "s"),
        17: ("subdomain", "s"), 19: ("schedulerName", "s"),
        20: ("initContainers", "[FullContainer]"), 21: ("automountServiceAccountToken", "b*"),
        22: ("tolerations", "[Toleration]"), 23: ("hostAliases", "[HostAlias]"),
        24: ("priorityClassName", "s"), 25: ("priority", "i*"),
        27: ("shareProcessNamespace", "b*"), 30: ("enableServiceLinks", "b*"),
        31: ("preemptionPolicy", "s"),
        34: ("ephemeralContainers", "[EphemeralContainer]"), 35: ("setHostnameAsFQDN", "b*")},
    "FullContainer": _CONTAINER,
    "EphemeralContainer": {1: ("", "FullContainer"), 2: ("targetContainerName", "s")},
    "VolumeMount": {1: ("name", "s"), 2: ("readOnly", "b"), 3: ("mountPath", "s"),
                    4: ("subPath", "s"), 5: ("mountPropagation", "s"),
                    6: ("subPathExpr", "s")},
    "Volume": {1: ("name", "s"), 2: ("", "VolumeSource")},
    "VolumeSource": {1: ("hostPath", "HostPathVolumeSource"),
                     2: ("emptyDir", "EmptyDirVolumeSource"),
                     6: ("secret", "SecretVolumeSource"),
                     16: ("downwardAPI", "DownwardAPIProjection"),
                     19: ("configMap", "ConfigMapVolumeSource"),
                     26: ("projected", "ProjectedVolumeSource")},
    "HostPathVolumeSource": {1: ("path", "s"), 2: ("type", "s")},
    "EmptyDirVolumeSource": {1: ("medium", "s")},
    "SecretVolumeSource": {1: ("secretName", "s"), 2: ("items", "[KeyToPath]"),
                           3: ("defaultMode", "i*"), 4: ("optional", "b*")},
    "ConfigMapVolumeSource": {1: _LOCAL_REF, 2: ("items", "[KeyToPath]"),
                              3: ("defaultMode", "i*"), 4: ("optional", "b*")},
    "KeyToPath": {1: ("key", "s"), 2: ("path", "s"), 3: ("mode", "i*")},
    "ProjectedVolumeSource": {1: ("sources", "[VolumeProjection]"), 2: ("defaultMode", "i*")},
    "VolumeProjection": {1: ("secret", "ConfigMapProjection"),
                         2: ("downwardAPI", "DownwardAPIProjection"),
                         3: ("configMap", "ConfigMapProjection"),
                         4: ("serviceAccountToken", "ServiceAccountTokenProjection")},
    "ConfigMapProjection": {1: _LOCAL_REF, 2: ("items", "[KeyToPath]"), 4: ("optional", "b*")},
    "DownwardAPIProjection": {1: ("items", "[DownwardAPIVolumeFile]")},
    "DownwardAPIVolumeFile": {1: ("path", "s"), 2: ("fieldRef", "ObjectFieldSelector"),
                              4: ("mode", "i*")},
    "ObjectFieldSelector": {1: ("apiVersion", "s"), 2: ("fieldPath", "s")},
    "ServiceAccountTokenProjection": {1: ("audience", "s"), 2: ("expirationSeconds", "i*"),
                                      3: ("path", "s")},
    "PodSecurityContext": {2: ("runAsUser", "i*"), 3: ("runAsNonRoot", "b*"),
                           4: ("supplementalGroups", "[i]"), 5: ("fsGroup", "i*"),
                           6: ("runAsGroup", "i*")},
    "SecurityContext": {1: ("capabilities", "Capabilities"), 2: ("privileged", "b*"),
                        4: ("runAsUser", "i*"), 5: ("runAsNonRoot", "b*"),
                        6: ("readOnlyRootFilesystem", "b*"),
                        7: ("allowPrivilegeEscalation", "b*"), 8: ("runAsGroup", "i*")},
    "Capabilities": {1: ("add", "[s]"), 2: ("drop", "[s]")},
    "Toleration": {1: ("key", "s"), 2: ("operator", "s"), 3: ("value", "s"),
                   4: ("effect", "s"), 5: ("tolerationSeconds", "i*")},
    "HostAlias": {1: ("ip", "s"), 2: ("hostnames", "[s]")},
    "FullEnvVar": {1: ("name", "s"), 2: ("value", "s"), 3: ("valueFrom", "EnvVarSource")},
    "EnvVarSource": {1: ("fieldRef", "ObjectFieldSelector"),
                     3: ("configMapKeyRef", "KeySelector"), 4: ("secretKeyRef", "KeySelector")},
    "KeySelector": {1: _LOCAL_REF, 2: ("key", "s"), 3: ("optional", "b*")},
    "EnvFromSource": {1: ("prefix", "s"), 2: ("configMapRef", "EnvSource"),
                      3: ("secretRef", "EnvSource")},
    "EnvSource": {1: _LOCAL_REF, 2: ("optional", "b*")},
    "Probe": {1: ("", "ProbeHandler"), 2: ("initialDelaySeconds", "i"),
              3: ("timeoutSeconds", "i"), 4: ("periodSeconds", "i"),
              5: ("successThreshold", "i"), 6: ("failureThreshold", "i")},
    "ProbeHandler": {**_ACTIONS, 4: ("grpc", "GRPCAction")},
    "Lifecycle": {1: ("postStart", "LifecycleHandler"), 2: ("preStop", "LifecycleHandler")},
    "LifecycleHandler": {**_ACTIONS, 4: ("sleep", "SleepAction")},
    "SleepAction": {1: ("seconds", "i")},
    "ExecAction": {1: ("command", "[s]")},
    "HTTPGetAction": {1: ("path", "s"), 2: ("port", "ios"), 3: ("host", "s"),
                      4: ("scheme", "s"), 5: ("httpHeaders", "[HTTPHeader]")},
    "HTTPHeader": {1: ("name", "s"), 2: ("value", "s")},
    "TCPSocketAction": {1: ("port", "ios"), 2: ("host", "s")},
    "GRPCAction": {1: ("port", "i"), 2: ("service", "s")},
}
