"""Pod and the types inside it (containers, probes, env, volumes), core/v1 on the wire.

Typed where knet acts on a field (the kubelet runs containers, probes, env and volumes; the
scheduler reads nodeSelector, tolerations, requests); everything else Kubernetes defines
round-trips through `extra="allow"`. Defaults are not set here but by
`control.models.validation.admit`, so a model built from stored JSON shows what was stored.
"""

from __future__ import annotations

from pydantic import Field

from control.models.meta import Condition, IntOrString, KModel, ObjectMeta, Quantity, TopLevel

__all__ = [
    "ConfigMapVolumeSource",
    "Container",
    "ContainerPort",
    "ContainerState",
    "ContainerStateRunning",
    "ContainerStateTerminated",
    "ContainerStateWaiting",
    "ContainerStatus",
    "EmptyDirVolumeSource",
    "EnvFromSource",
    "EnvVar",
    "EnvVarSource",
    "ExecAction",
    "GRPCAction",
    "HTTPGetAction",
    "HTTPHeader",
    "KeySelector",
    "KeyToPath",
    "LocalRef",
    "ObjectFieldSelector",
    "Pod",
    "PodIP",
    "PodSpec",
    "PodStatus",
    "PodTemplateSpec",
    "Probe",
    "ResourceRequirements",
    "SecretVolumeSource",
    "TCPSocketAction",
    "Toleration",
    "Volume",
    "VolumeMount",
]


class ObjectFieldSelector(KModel):
    field_path: str
    api_version: str | None = None


class KeySelector(KModel):
    """configMapKeyRef / secretKeyRef."""
    key: str
    name: str | None = None
    optional: bool | None = None


class EnvVarSource(KModel):
    field_ref: ObjectFieldSelector | None = None
    config_map_key_ref: KeySelector | None = None
    secret_key_ref: KeySelector | None = None
    resource_field_ref: dict[str, str] | None = None


class EnvVar(KModel):
    name: str
    value: str | None = None
    value_from: EnvVarSource | None = None


class LocalRef(KModel):
    """configMapRef / secretRef of envFrom."""
    name: str | None = None
    optional: bool | None = None


class EnvFromSource(KModel):
    prefix: str | None = None
    config_map_ref: LocalRef | None = None
    secret_ref: LocalRef | None = None


class ContainerPort(KModel):
    container_port: int
    name: str | None = None
    protocol: str | None = None
    host_port: int | None = None
    host_ip: str | None = None


class HTTPHeader(KModel):
    name: str
    value: str


class HTTPGetAction(KModel):
    port: IntOrString
    path: str | None = None
    host: str | None = None
    scheme: str | None = None
    http_headers: list[HTTPHeader] | None = None


class TCPSocketAction(KModel):
    port: IntOrString
    host: str | None = None


class ExecAction(KModel):
    command: list[str] | None = None


class GRPCAction(KModel):
    port: int
    service: str | None = None


class Probe(KModel):
    exec: ExecAction | None = None
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    grpc: GRPCAction | None = None
    initial_delay_seconds: int | None = None
    period_seconds: int | None = None
    timeout_seconds: int | None = None
    success_threshold: int | None = None
    failure_threshold: int | None = None
    termination_grace_period_seconds: int | None = None


class ResourceRequirements(KModel):
    limits: dict[str, Quantity] | None = None
    requests: dict[str, Quantity] | None = None


class VolumeMount(KModel):
    name: str
    mount_path: str
    read_only: bool | None = None
    sub_path: str | None = None


class Container(KModel):
    name: str
    image: str | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    working_dir: str | None = None
    ports: list[ContainerPort] | None = None
    env: list[EnvVar] | None = None
    env_from: list[EnvFromSource] | None = None
    resources: ResourceRequirements | None = None
    volume_mounts: list[VolumeMount] | None = None
    liveness_probe: Probe | None = None
    readiness_probe: Probe | None = None
    startup_probe: Probe | None = None
    image_pull_policy: str | None = None
    termination_message_path: str | None = None
    termination_message_policy: str | None = None
    restart_policy: str | None = None          # sidecar init containers ("Always")
    stdin: bool | None = None
    tty: bool | None = None


class KeyToPath(KModel):
    key: str
    path: str
    mode: int | None = None


class ConfigMapVolumeSource(KModel):
    name: str | None = None
    items: list[KeyToPath] | None = None
    default_mode: int | None = None
    optional: bool | None = None


class SecretVolumeSource(KModel):
    secret_name: str | None = None
    items: list[KeyToPath] | None = None
    default_mode: int | None = None
    optional: bool | None = None


class EmptyDirVolumeSource(KModel):
    medium: str | None = None
    size_limit: Quantity | None = None


class Volume(KModel):
    name: str
    config_map: ConfigMapVolumeSource | None = None
    secret: SecretVolumeSource | None = None
    empty_dir: EmptyDirVolumeSource | None = None


class Toleration(KModel):
    key: str | None = None
    operator: str | None = None
    value: str | None = None
    effect: str | None = None
    toleration_seconds: int | None = None


class PodSpec(KModel):
    containers: list[Container] = Field(default_factory=list)
    init_containers: list[Container] | None = None
    volumes: list[Volume] | None = None
    restart_policy: str | None = None
    termination_grace_period_seconds: int | None = None
    active_deadline_seconds: int | None = None
    dns_policy: str | None = None
    node_selector: dict[str, str] | None = None
    service_account_name: str | None = None
    node_name: str | None = None
    host_network: bool | None = None
    hostname: str | None = None
    subdomain: str | None = None
    scheduler_name: str | None = None
    tolerations: list[Toleration] | None = None
    priority: int | None = None
    enable_service_links: bool | None = None
    set_hostname_as_fqdn: bool | None = None


class ContainerStateWaiting(KModel):
    reason: str | None = None
    message: str | None = None


class ContainerStateRunning(KModel):
    started_at: str | None = None


class ContainerStateTerminated(KModel):
    exit_code: int
    signal: int | None = None
    reason: str | None = None
    message: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    container_id: str | None = None


class ContainerState(KModel):
    waiting: ContainerStateWaiting | None = None
    running: ContainerStateRunning | None = None
    terminated: ContainerStateTerminated | None = None


class ContainerStatus(KModel):
    name: str
    ready: bool = False
    restart_count: int = 0
    state: ContainerState | None = None
    last_state: ContainerState | None = None
    image: str | None = None
    image_id: str | None = None
    container_id: str | None = None
    started: bool | None = None


class PodIP(KModel):
    ip: str


class PodStatus(KModel):
    phase: str | None = None
    conditions: list[Condition] | None = None
    message: str | None = None
    reason: str | None = None
    host_ip: str | None = None
    host_ips: list[PodIP] | None = None
    pod_ip: str | None = None
    pod_ips: list[PodIP] | None = None
    start_time: str | None = None
    container_statuses: list[ContainerStatus] | None = None
    init_container_statuses: list[ContainerStatus] | None = None
    nominated_node_name: str | None = None
    qos_class: str | None = None

    def condition(self, kind: str) -> Condition | None:
        for c in self.conditions or []:
            if c.type == kind:
                return c
        return None


class PodTemplateSpec(KModel):
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: PodSpec = Field(default_factory=PodSpec)


class Pod(TopLevel):
    api_version: str | None = "v1"
    kind: str | None = "Pod"
    spec: PodSpec = Field(default_factory=PodSpec)
    status: PodStatus | None = None

    @property
    def is_ready(self) -> bool:
        cond = self.status.condition("Ready") if self.status else None
        return cond is not None and cond.status == "True"
