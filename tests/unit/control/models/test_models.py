"""The pydantic models: Kubernetes names on the wire, typed access, unknown fields kept."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from control.models.cluster import Node, Secret
from control.models.kinds import MODELS, model_for
from control.models.meta import ObjectMeta, OwnerReference, TopLevel, wire_alias
from control.models.pod import Container, Pod, PodSpec
from control.models.resources import RESOURCES
from control.models.service import Service
from control.models.workloads import Deployment, ReplicationController

POD: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web"},
                 "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                      "name": "web-abc", "uid": "u1", "controller": True}],
                 "someFutureMeta": {"x": 1}},
    "spec": {
        "containers": [{
            "name": "app", "image": "knet/whoami",
            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
            "env": [{"name": "A", "value": "1"},
                    {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {"name": "K", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}],
            "envFrom": [{"secretRef": {"name": "s"}}],
            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 2},
            "livenessProbe": {"tcpSocket": {"port": 8080}},
            "startupProbe": {"exec": {"command": ["true"]}},
            "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}],
            "resources": {"requests": {"cpu": "100m", "memory": 64}},
            "securityContext": {"privileged": True},
        }],
        "volumes": [{"name": "cfg", "configMap": {"name": "cm"}},
                    {"name": "s", "secret": {"secretName": "s"}},
                    {"name": "tmp", "emptyDir": {}},
                    {"name": "host", "hostPath": {"path": "/tmp"}}],
        "nodeSelector": {"disk": "ssd"}, "hostname": "web", "subdomain": "sub",
        "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {}},
    },
    "status": {"phase": "Running", "podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}],
               "hostIP": "172.18.0.2",
               "conditions": [{"type": "Ready", "status": "True"}],
               "containerStatuses": [{"name": "app", "ready": True, "restartCount": 2,
                                      "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}},
                                      "containerID": "knet://1"}]},
}


def test_pod_typed_access() -> None:
    pod = Pod.model_validate(POD)
    c = pod.spec.containers[0]
    assert c.ports and c.ports[0].container_port == 8080
    assert c.readiness_probe and c.readiness_probe.http_get
    assert c.readiness_probe.http_get.port == "http"
    assert c.liveness_probe and c.liveness_probe.tcp_socket
    assert c.liveness_probe.tcp_socket.port == 8080
    assert c.env and c.env[1].value_from and c.env[1].value_from.field_ref
    assert c.env[1].value_from.field_ref.field_path == "spec.nodeName"
    assert pod.spec.volumes and pod.spec.volumes[1].secret
    assert pod.spec.volumes[1].secret.secret_name == "s"
    assert pod.status and pod.status.pod_ip == "10.244.1.5" and pod.is_ready
    assert pod.status.container_statuses and pod.status.container_statuses[0].restart_count == 2
    ref = pod.metadata.controller_ref()
    assert ref and ref.kind == "ReplicaSet" and ref.uid == "u1"
    assert pod.key == "default/web-1"


def test_pod_round_trips_unknown_fields_exactly() -> None:
    assert Pod.model_validate(POD).to_wire() == POD


@pytest.mark.parametrize("resource", sorted(MODELS))
def test_every_model_round_trips_unknown_fields(resource: str) -> None:
    model = model_for(resource)
    obj = {**model().to_wire(), "metadata": {"name": "a", "newThing": [1]},
           "fancyTopLevel": {"nested": {"deep": True}}}
    assert obj["kind"] == model().kind and obj["apiVersion"]
    assert model.model_validate(obj).to_wire() == obj


def test_every_served_resource_has_a_model() -> None:
    missing = {r.plural for r in RESOURCES if r.stored} - set(MODELS) - {
        "bindings", "customresourcedefinitions"}      # CRDs: control.api.crd, upstream schema
    assert missing == set()
    assert model_for("bindings") is TopLevel


def test_snake_case_in_python_camel_case_on_the_wire() -> None:
    assert wire_alias("cluster_ips") == "clusterIPs"
    assert wire_alias("pod_cidr") == "podCIDR"
    assert wire_alias("continue_") == "continue"
    assert wire_alias("system_uuid") == "systemUUID"
    pod = Pod(metadata=ObjectMeta(name="p", namespace="default",
                                  owner_references=[OwnerReference(
                                      api_version="apps/v1", kind="ReplicaSet", name="r",
                                      uid="u", controller=True, block_owner_deletion=True)]),
              spec=PodSpec(containers=[Container(name="c", image="i")], node_name="node-1"))
    assert pod.to_wire() == {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default",
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                          "name": "r", "uid": "u", "controller": True,
                                          "blockOwnerDeletion": True}]},
        "spec": {"containers": [{"name": "c", "image": "i"}], "nodeName": "node-1"}}


def test_assignment_shows_on_the_wire() -> None:
    pod = Pod.model_validate({"metadata": {"name": "p"}, "spec": {"containers": []}})
    pod.spec.node_name = "node-2"
    pod.metadata.labels = {"a": "b"}
    wire = pod.to_wire()
    assert wire["spec"]["nodeName"] == "node-2" and wire["metadata"]["labels"] == {"a": "b"}


def test_service_fields() -> None:
    svc = Service.model_validate({
        "metadata": {"name": "web"},
        "spec": {"type": "NodePort", "clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                 "selector": {"app": "web"}, "sessionAffinity": "ClientIP",
                 "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http",
                            "nodePort": 30080, "appProtocol": "http"},
                           {"port": 53, "protocol": "UDP", "targetPort": 5353}]}})
    assert svc.spec.cluster_ip == "10.96.0.20" and svc.spec.cluster_ips == ["10.96.0.20"]
    assert svc.spec.ports and svc.spec.ports[0].target_port == "http"
    assert svc.spec.ports[1].target_port == 5353 and svc.spec.ports[0].node_port == 30080
    assert svc.spec.affinity_timeout == 60 and not svc.spec.is_headless
    svc.spec.session_affinity_config = None
    assert svc.spec.affinity_timeout == 10800
    assert svc.to_wire()["spec"]["clusterIPs"] == ["10.96.0.20"]


def test_deployment_strategy_int_or_percent() -> None:
    d = Deployment.model_validate({
        "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "strategy": {"type": "RollingUpdate",
                              "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    ru = d.spec.strategy.rolling_update if d.spec.strategy else None
    assert ru and ru.max_surge == 1 and ru.max_unavailable == "25%"
    assert d.spec.selector and d.spec.selector.match_labels == {"app": "web"}
    rc = ReplicationController.model_validate({"metadata": {"name": "r"},
                                                "spec": {"selector": {"app": "web"}}})
    assert rc.spec.selector == {"app": "web"}


def test_secret_decoded_and_node_address() -> None:
    s = Secret.model_validate({"metadata": {"name": "s"},
                               "data": {"k": base64.b64encode(b"\x00v").decode()}})
    assert s.decoded() == {"k": b"\x00v"}
    n = Node.model_validate({"metadata": {"name": "node-1"},
                             "status": {"addresses": [{"type": "InternalIP",
                                                       "address": "172.18.0.2"}],
                                        "nodeInfo": {"kubeletVersion": "v1.32.0"}}})
    assert n.address() == "172.18.0.2" and n.address("Hostname") is None
    assert n.status and n.status.node_info and n.status.node_info.kubelet_version == "v1.32.0"
