"""`kubectl debug` against knet's real API app (no kubelet): the ephemeral container's
strategic merge PATCH lands in `spec.ephemeralContainers`; `--copy-to` and `node/NAME` post
their Pod as protobuf (once a 415) and it arrives whole; a pod that is gone is kubectl's
plain NotFound (once a nil-pointer panic in kubectl)."""

from __future__ import annotations

import json
from typing import Any

CLIENT = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "namespace": "default"},
          "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"],
                                   "env": [{"name": "ME", "valueFrom": {"fieldRef": {
                                       "fieldPath": "metadata.name"}}}]}],
                   "volumes": [{"name": "cfg", "configMap": {"name": "cfg", "optional": True}}],
                   "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoExecute",
                                    "tolerationSeconds": 5}]}}


async def pod(run: Any, name: str) -> dict[str, Any]:
    r = await run("get", "pod", name, "-o", "json")
    assert r.code == 0, r.err
    return json.loads(r.out)  # type: ignore[no-any-return]


async def test_kubectl_debug_adds_an_ephemeral_container(run: Any) -> None:
    assert (await run("apply", "-f", "-", stdin=json.dumps(CLIENT))).code == 0
    r = await run("debug", "client", "--image=busybox", "--target=c", "-c", "dbg", "--",
                  "sh", "-c", "ps")
    assert r.code == 0, r.err
    ec = (await pod(run, "client"))["spec"]["ephemeralContainers"]
    assert [(e["name"], e["targetContainerName"], e["command"]) for e in ec] == \
        [("dbg", "c", ["sh", "-c", "ps"])]


async def test_debug_copy_to_posts_a_protobuf_pod_that_arrives_whole(run: Any) -> None:
    assert (await run("apply", "-f", "-", stdin=json.dumps(CLIENT))).code == 0
    r = await run("debug", "client", "--image=busybox", "--copy-to=client-debug",
                  "--share-processes", "-c", "dbg")
    assert r.code == 0, r.err
    copy = (await pod(run, "client-debug"))["spec"]
    assert copy["shareProcessNamespace"] is True
    assert [c["name"] for c in copy["containers"]] == ["c", "dbg"]
    assert copy["containers"][0]["command"] == ["sleep", "3600"]
    assert copy["containers"][0]["env"] == [{"name": "ME", "valueFrom": {"fieldRef": {
        "apiVersion": "v1", "fieldPath": "metadata.name"}}}]
    assert copy["volumes"][0]["configMap"]["name"] == "cfg"
    assert {"key": "k", "operator": "Exists", "effect": "NoExecute",
            "tolerationSeconds": 5} in copy["tolerations"]


async def test_debug_node_posts_a_host_pod(run: Any) -> None:
    assert (await run("create", "-f", "-", stdin=json.dumps(
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}}))).code == 0
    r = await run("debug", "node/node-1", "--image=busybox", "--", "true")
    assert r.code == 0, r.err
    name = next(line.split()[0] for line in (await run("get", "pods", "--no-headers")).out
                .splitlines() if line.startswith("node-debugger-node-1-"))
    spec = (await pod(run, name))["spec"]
    assert spec["nodeName"] == "node-1" and spec["hostPID"] is True
    assert spec["volumes"] == [{"name": "host-root", "hostPath": {"path": "/", "type": ""}}]
    assert spec["containers"][0]["volumeMounts"] == [{"name": "host-root",
                                                      "mountPath": "/host"}]


async def test_debug_of_a_pod_that_is_gone(run: Any) -> None:
    r = await run("debug", "gone", "--image=busybox")
    assert r.code == 1
    assert r.err.strip().endswith('\nError from server (NotFound): pods "gone" not found')
    assert "panic" not in r.err


RICH = {"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "rich", "namespace": "default", "labels": {"a": "b"}},
        "spec": {"containers": [{
            "name": "c", "image": "busybox", "command": ["sleep", "3600"],
            "ports": [{"containerPort": 80, "name": "http"}],
            "livenessProbe": {"httpGet": {"path": "/h", "port": "http"}, "periodSeconds": 3},
            "readinessProbe": {"grpc": {"port": 9000, "service": "x"}},
            "lifecycle": {"postStart": {"exec": {"command": ["true"]}},
                          "preStop": {"sleep": {"seconds": 2}}},
            "securityContext": {"runAsUser": 0, "capabilities": {"add": ["NET_ADMIN"]},
                                "privileged": False},
            "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}},
            "envFrom": [{"configMapRef": {"name": "cm", "optional": True}}],
            "env": [{"name": "A", "value": "1"}, {"name": "S", "valueFrom": {"secretKeyRef": {
                "name": "s", "key": "k", "optional": True}}}],
            "volumeMounts": [{"name": "d", "mountPath": "/d", "readOnly": True}]}],
            "volumes": [{"name": "d", "emptyDir": {}}],
            "securityContext": {"runAsNonRoot": False, "fsGroup": 2000},
            "hostAliases": [{"ip": "1.2.3.4", "hostnames": ["x"]}],
            "terminationGracePeriodSeconds": 0, "automountServiceAccountToken": False}}


async def test_a_protobuf_copy_keeps_the_whole_spec(run: Any) -> None:
    """Probes (gRPC too), hooks, security contexts, limits, env sources, host aliases and
    Go pointers set to their zero value (`terminationGracePeriodSeconds: 0`) survive."""
    assert (await run("apply", "-f", "-", stdin=json.dumps(RICH))).code == 0
    r = await run("debug", "rich", "--image=busybox", "--copy-to=rich2", "--keep-liveness",
                  "--keep-readiness", "--keep-labels", "-c", "dbg")
    assert r.code == 0, r.err
    original, copy = (await pod(run, "rich"))["spec"], (await pod(run, "rich2"))["spec"]
    assert [c["name"] for c in copy.pop("containers")] == ["c", "dbg"]
    original.pop("containers")
    assert copy == original
    assert (await pod(run, "rich2"))["spec"]["containers"][0] == \
        (await pod(run, "rich"))["spec"]["containers"][0]
