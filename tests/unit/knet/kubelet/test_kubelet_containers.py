"""From a pod's container to what the runtime runs: env sources, $(VAR) expansion,
volumes as files, service variables, and the errors a user sees."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from knet.kubelet import containers as c

POD = {"metadata": {"name": "web-1", "namespace": "default", "uid": "u1",
                    "labels": {"app": "web"}},
       "spec": {"containers": []}}

OBJECTS = {
    ("configmaps", "default", "cfg"): {"data": {"MODE": "fast", "greeting": "hello"}},
    ("secrets", "default", "pw"): {"data": {"password": base64.b64encode(b"s3cret").decode()}},
}


async def lookup(resource: str, namespace: str, name: str) -> dict | None:
    return OBJECTS.get((resource, namespace, name))


async def env_of(container: dict) -> dict[str, str]:
    return await c.build_env(POD, container, lookup=lookup, node_name="node-1",
                             pod_ip="10.244.1.5", host_ip="172.18.0.2",
                             service_env={"WEB_SERVICE_HOST": "10.96.0.20"})


async def test_env_from_every_source() -> None:
    env = await env_of({"name": "app", "envFrom": [{"configMapRef": {"name": "cfg"},
                                                    "prefix": "CFG_"}],
                        "env": [
        {"name": "A", "value": "x"},
        {"name": "B", "value": "$(A)-y $$(A)"},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "pw", "key": "password"}}},
        {"name": "M", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "MODE"}}},
    ]})
    assert env["A"] == "x" and env["B"] == "x-y $(A)"
    assert (env["POD"], env["IP"], env["NODE"], env["APP"]) == ("web-1", "10.244.1.5",
                                                                  "node-1", "web")
    assert env["PW"] == "s3cret" and env["M"] == "fast" and env["CFG_greeting"] == "hello"
    assert env["WEB_SERVICE_HOST"] == "10.96.0.20"


async def test_missing_configmap_is_a_config_error_naming_it() -> None:
    with pytest.raises(c.ConfigError) as err:
        await env_of({"name": "app", "env": [
            {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}]})
    assert err.value.reason == "CreateContainerConfigError"
    assert "nope" in err.value.message
    env = await env_of({"name": "app", "env": [
        {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k",
                                                        "optional": True}}}]})
    assert "X" not in env


async def test_volumes_become_files_and_mounts(tmp_path: Path) -> None:
    pod = {**POD, "spec": {"volumes": [
        {"name": "conf", "configMap": {"name": "cfg"}},
        {"name": "sec", "secret": {"secretName": "pw", "items": [{"key": "password",
                                                                  "path": "db/pw"}]}},
        {"name": "scratch", "emptyDir": {}}]}}
    vols = await c.materialize_volumes(pod, tmp_path, lookup=lookup)
    assert (vols["conf"] / "MODE").read_text() == "fast"
    assert (vols["sec"] / "db" / "pw").read_text() == "s3cret"
    assert vols["scratch"].is_dir()
    mounts = c.mounts_for({"name": "app", "volumeMounts": [
        {"name": "conf", "mountPath": "/etc/app", "readOnly": True}]}, vols)
    assert mounts[0].container_path == "/etc/app" and mounts[0].read_only
    with pytest.raises(c.ConfigError):
        c.mounts_for({"name": "app", "volumeMounts": [{"name": "x", "mountPath": "/x"}]}, vols)


def test_service_env_like_docker_links() -> None:
    svcs = [{"metadata": {"name": "my-web", "namespace": "default"},
             "spec": {"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80}]}},
            {"metadata": {"name": "other", "namespace": "prod"},
             "spec": {"clusterIP": "10.96.0.21", "ports": [{"port": 81}]}},
            {"metadata": {"name": "headless", "namespace": "default"},
             "spec": {"clusterIP": "None", "ports": [{"port": 82}]}}]
    env = c.service_env(svcs, "default")
    assert env == {"MY_WEB_SERVICE_HOST": "10.96.0.20", "MY_WEB_SERVICE_PORT": "80",
                   "MY_WEB_SERVICE_PORT_HTTP": "80"}


SC_POD = {"metadata": {"name": "web", "namespace": "default", "uid": "u-1"}, "spec": {}}


def test_security_context_container_wins_field_by_field() -> None:
    pod = {**SC_POD, "spec": {"securityContext": {"runAsUser": 1000, "runAsGroup": 3000}}}
    ctr = {"name": "app", "securityContext": {
        "runAsUser": 2000, "readOnlyRootFilesystem": True,
        "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}}}
    assert c.security(pod, ctr) == {
        "run_as_user": 2000, "run_as_group": 3000, "privileged": False, "read_only_root": True,
        "cap_add": ("NET_ADMIN",), "cap_drop": ("ALL",)}
    assert c.security(SC_POD, {"name": "app"})["run_as_user"] is None


def test_run_as_non_root_refuses_root_as_the_kubelet_does() -> None:
    pod = {**SC_POD, "spec": {"securityContext": {"runAsNonRoot": True}}}
    with pytest.raises(c.ConfigError) as info:
        c.security(pod, {"name": "app"})
    assert info.value.reason == "CreateContainerConfigError"
    assert info.value.message == ("container has runAsNonRoot and image will run as root "
                                  '(pod: "web_default(u-1)", container: app)')
    with pytest.raises(c.ConfigError, match="container's runAsUser breaks non-root policy"):
        c.security(pod, {"name": "app", "securityContext": {"runAsUser": 0}})
    assert c.security(pod, {"name": "app", "securityContext": {"runAsUser": 1000}})[
        "run_as_user"] == 1000


def test_limits_in_bytes_and_millicores() -> None:
    assert c.limits({"resources": {"limits": {"memory": "64Mi", "cpu": "250m"}}}) == {
        "memory_limit": 64 * 2**20, "cpu_limit_millis": 250}
    assert c.limits({"resources": {"requests": {"memory": "1Gi"}}}) == {
        "memory_limit": None, "cpu_limit_millis": None}
    with pytest.raises(c.ConfigError, match="not valid"):
        c.limits({"resources": {"limits": {"memory": "lots"}}})
