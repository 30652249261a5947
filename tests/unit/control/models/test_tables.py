"""Table output for `kubectl get`: columns, cells as kubectl shows them, row objects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from control.models.printers import human_duration, pod_status
from control.models.resources import RESOURCES
from control.models.tables import columns, table

Obj = dict[str, Any]
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def ago(**delta: float) -> str:
    return (NOW - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(name: str, **extra: Any) -> Obj:
    return {"name": name, "namespace": "default", "creationTimestamp": ago(seconds=30),
            "uid": f"uid-{name}", "resourceVersion": "7", **extra}


def cells(resource: str, obj: Obj) -> list[Any]:
    out = table(resource, [obj], now=NOW)
    return list(out["rows"][0]["cells"])


def named(resource: str, obj: Obj) -> dict[str, Any]:
    out = table(resource, [obj], now=NOW)
    return {c["name"]: v for c, v in zip(out["columnDefinitions"], out["rows"][0]["cells"])}


@pytest.mark.parametrize("seconds,text", [
    (-5, "<invalid>"), (-1, "0s"), (0, "0s"), (5, "5s"), (119, "119s"), (120, "2m"),
    (192, "3m12s"), (599, "9m59s"), (600, "10m"), (179 * 60, "179m"), (3 * 3600, "3h"),
    (5 * 3600 + 180, "5h3m"), (47 * 3600, "47h"), (48 * 3600, "2d"),
    (53 * 3600, "2d5h"), (10 * 86400, "10d"), (729 * 86400, "729d"),
    ((3 * 365 + 12) * 86400, "3y12d"), (10 * 365 * 86400, "10y"),
])
def test_human_duration_matches_kubectl(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


def test_table_shape_is_what_kubectl_expects() -> None:
    pod = {"metadata": meta("web-1", labels={"app": "web"}),
           "spec": {"containers": [{"name": "app"}]}, "status": {"phase": "Pending"}}
    out = table("pods", [pod], now=NOW)
    assert out["kind"] == "Table" and out["apiVersion"] == "meta.k8s.io/v1"
    cols = out["columnDefinitions"]
    assert [c["name"] for c in cols] == ["Name", "Ready", "Status", "Restarts", "Age", "IP",
                                         "Node", "Nominated Node", "Readiness Gates"]
    assert [c["priority"] for c in cols] == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert all(set(c) == {"name", "type", "format", "description", "priority"} for c in cols)
    assert cols[0]["format"] == "name" and all(c["description"] for c in cols)
    row = out["rows"][0]
    assert row["cells"] == ["web-1", "0/1", "Pending", "0", "30s", "<none>", "<none>",
                            "<none>", "<none>"]
    assert row["object"] == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": pod["metadata"]}
    bare = table("pods", [pod], now=NOW, include="None", include_columns=False,
                 list_meta={"resourceVersion": "42"})
    assert "object" not in bare["rows"][0] and bare["columnDefinitions"] == []
    assert bare["metadata"] == {"resourceVersion": "42"}


def running(name: str = "app", ready: bool = True, restarts: int = 0) -> Obj:
    return {"name": name, "ready": ready, "restartCount": restarts,
            "state": {"running": {"startedAt": ago(minutes=1)}}}


def waiting(reason: str, restarts: int = 0) -> Obj:
    return {"name": "app", "ready": False, "restartCount": restarts,
            "state": {"waiting": {"reason": reason}}}


def terminated(reason: str | None, code: int, name: str = "app") -> Obj:
    term: Obj = {"exitCode": code}
    if reason:
        term["reason"] = reason
    return {"name": name, "ready": False, "restartCount": 0, "state": {"terminated": term}}


def pod_with(statuses: list[Obj], phase: str = "Running", inits: list[Obj] | None = None,
             init_statuses: list[Obj] | None = None, **md: Any) -> Obj:
    spec: Obj = {"containers": [{"name": s["name"]} for s in statuses] or [{"name": "app"}]}
    status: Obj = {"phase": phase, "containerStatuses": statuses}
    if inits is not None:
        spec["initContainers"] = inits
        status["initContainerStatuses"] = init_statuses or []
    return {"metadata": meta("p", **md), "spec": spec, "status": status}


@pytest.mark.parametrize("pod,status,ready", [
    (pod_with([], phase="Pending"), "Pending", "0/1"),
    (pod_with([waiting("ContainerCreating")], phase="Pending"), "ContainerCreating", "0/1"),
    (pod_with([running()]), "Running", "1/1"),
    (pod_with([running("a"), running("b", ready=False)]), "Running", "1/2"),
    (pod_with([waiting("CrashLoopBackOff", restarts=4)]), "CrashLoopBackOff", "0/1"),
    (pod_with([waiting("ErrImagePull")], phase="Pending"), "ErrImagePull", "0/1"),
    (pod_with([terminated("Completed", 0)], phase="Succeeded"), "Completed", "0/1"),
    (pod_with([terminated("Error", 1)], phase="Failed"), "Error", "0/1"),
    (pod_with([terminated(None, 137)], phase="Failed"), "ExitCode:137", "0/1"),
    (pod_with([running()], deletionTimestamp=ago(seconds=1)), "Terminating", "1/1"),
    (pod_with([terminated("Completed", 0)], phase="Succeeded",
              deletionTimestamp=ago(seconds=1)), "Completed", "0/1"),
    (pod_with([waiting("PodInitializing")], phase="Pending", inits=[{"name": "init"}],
              init_statuses=[{"name": "init", "state": {"running": {}}}]), "Init:0/1", "0/1"),
    (pod_with([waiting("PodInitializing")], phase="Pending", inits=[{"name": "init"}],
              init_statuses=[{"name": "init", "state": {"waiting": {
                  "reason": "CrashLoopBackOff"}}}]), "Init:CrashLoopBackOff", "0/1"),
    (pod_with([waiting("PodInitializing")], phase="Pending", inits=[{"name": "init"}],
              init_statuses=[{"name": "init", "state": {"terminated": {
                  "exitCode": 1, "reason": "Error"}}}]), "Init:Error", "0/1"),
])
def test_pod_status_column(pod: Obj, status: str, ready: str) -> None:
    row = named("pods", pod)
    assert (row["Status"], row["Ready"]) == (status, ready)


def test_pod_restarts_ip_node_and_row_conditions() -> None:
    cs = running(restarts=3)
    cs["lastState"] = {"terminated": {"exitCode": 1, "finishedAt": ago(minutes=5)}}
    pod = pod_with([cs])
    pod["spec"]["nodeName"] = "node-1"
    pod["status"]["podIPs"] = [{"ip": "10.244.1.5"}]
    row = named("pods", pod)
    assert row["Restarts"] == "3 (5m ago)" and row["IP"] == "10.244.1.5"
    assert row["Node"] == "node-1"
    done = table("pods", [pod_with([terminated("Completed", 0)], phase="Succeeded")], now=NOW)
    assert done["rows"][0]["conditions"][0]["type"] == "Completed"
    assert pod_status(pod)[3] == 3


def test_service_columns() -> None:
    svc = {"metadata": meta("web"), "spec": {
        "type": "NodePort", "clusterIP": "10.96.0.20", "selector": {"tier": "f", "app": "web"},
        "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080},
                  {"port": 53, "protocol": "UDP"}]}}
    assert cells("services", svc) == ["web", "NodePort", "10.96.0.20", "<none>",
                                      "80:30080/TCP,53/UDP", "30s", "app=web,tier=f"]
    lb = {"metadata": meta("lb"), "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.5",
                                           "ports": [{"port": 443}]}}
    assert named("services", lb)["External-IP"] == "<pending>"
    ext = {"metadata": meta("db"), "spec": {"type": "ExternalName",
                                            "externalName": "db.example.com"}}
    row = named("services", ext)
    assert (row["Cluster-IP"], row["External-IP"], row["Port(s)"], row["Selector"]) == (
        "<none>", "db.example.com", "<none>", "<none>")


def test_workload_columns() -> None:
    template = {"spec": {"containers": [{"name": "a", "image": "nginx:1"},
                                        {"name": "b", "image": "busybox"}]}}
    d = {"metadata": meta("web"), "spec": {"replicas": 3, "template": template,
                                           "selector": {"matchLabels": {"app": "web"}}},
         "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}
    assert cells("deployments", d) == ["web", "2/3", 3, 2, "30s", "a,b", "nginx:1,busybox",
                                       "app=web"]
    rs = {**d, "status": {"replicas": 3, "readyReplicas": 1}}
    assert cells("replicasets", rs)[:5] == ["web", 3, 3, 1, "30s"]
    rc = {"metadata": meta("rc"), "spec": {"replicas": 2, "selector": {"app": "x"},
                                           "template": template}}
    row = named("replicationcontrollers", rc)
    assert (row["Desired"], row["Current"], row["Ready"], row["Selector"]) == (2, 0, 0, "app=x")


def test_node_columns() -> None:
    node = {"metadata": {"name": "node-1", "creationTimestamp": ago(days=2),
                         "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": True},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "172.18.0.2"}],
                       "nodeInfo": {"kubeletVersion": "v1.32.0-knet"}}}
    row = named("nodes", node)
    assert (row["Name"], row["Status"], row["Roles"], row["Age"], row["Version"],
            row["Internal-IP"]) == ("node-1", "Ready,SchedulingDisabled", "control-plane",
                                    "2d", "v1.32.0-knet", "172.18.0.2")
    node["status"]["conditions"][0]["status"] = "Unknown"  # lease expired: kubectl says NotReady
    node["spec"] = {}
    assert named("nodes", node)["Status"] == "NotReady"
    node["status"]["conditions"] = []
    assert named("nodes", node)["Status"] == "Unknown"


def test_endpoint_columns() -> None:
    ep = {"metadata": meta("web"), "subsets": [{
        "addresses": [{"ip": f"10.244.1.{i}"} for i in range(1, 4)],
        "notReadyAddresses": [{"ip": "10.244.9.9"}],
        "ports": [{"port": 8080}, {"port": 9090}]}]}
    assert named("endpoints", ep)["Endpoints"] == \
        "10.244.1.1:8080,10.244.1.1:9090,10.244.1.2:8080 + 3 more..."
    assert named("endpoints", {"metadata": meta("none")})["Endpoints"] == "<none>"
    es = {"metadata": meta("web-abc"), "addressType": "IPv4",
          "endpoints": [{"addresses": ["10.244.1.1"]}, {"addresses": ["10.244.2.1"]}],
          "ports": [{"port": 8080, "name": "http"}]}
    assert cells("endpointslices", es) == ["web-abc", "IPv4", "8080",
                                           "10.244.1.1,10.244.2.1", "30s"]


def test_event_columns() -> None:
    ev = {"metadata": meta("web-1.abc"), "type": "Warning", "reason": "BackOff",
          "message": " Back-off restarting failed container \n", "count": 4,
          "firstTimestamp": ago(minutes=10), "lastTimestamp": ago(seconds=20),
          "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{a}"},
          "source": {"component": "kubelet", "host": "node-1"}}
    row = named("events", ev)
    assert [row[k] for k in ("Last Seen", "Type", "Reason", "Object", "Message")] == [
        "20s", "Warning", "BackOff", "pod/web-1", "Back-off restarting failed container"]
    assert (row["Source"], row["First Seen"], row["Count"], row["Subobject"]) == (
        "kubelet, node-1", "10m", 4, "spec.containers{a}")


def test_simple_kinds_and_default() -> None:
    assert cells("namespaces", {"metadata": meta("team"), "status": {"phase": "Active"}}) == \
        ["team", "Active", "30s"]
    assert cells("configmaps", {"metadata": meta("cm"), "data": {"a": "1", "b": "2"}}) == \
        ["cm", 2, "30s"]
    assert cells("secrets", {"metadata": meta("s"), "type": "Opaque", "data": {"k": "dg=="}}) \
        == ["s", "Opaque", 1, "30s"]
    assert cells("leases", {"metadata": meta("node-1"),
                            "spec": {"holderIdentity": "node-1"}}) == ["node-1", "node-1", "30s"]
    out = table("bindings", [{"metadata": meta("j")}], now=NOW)
    assert [c["name"] for c in out["columnDefinitions"]] == ["Name", "Age"]
    assert out["rows"][0]["cells"] == ["j", "30s"]
    assert cells("pods", {"metadata": {"name": "x"}})[4] == "<unknown>"


@pytest.mark.parametrize("resource", sorted(r.plural for r in RESOURCES))
def test_every_resource_has_one_cell_per_column(resource: str) -> None:
    obj = {"metadata": meta("x"), "spec": {}, "status": {}}
    out = table(resource, [obj, obj], now=NOW)
    assert len(out["rows"]) == 2
    assert all(len(r["cells"]) == len(columns(resource)) for r in out["rows"])
    assert out["columnDefinitions"][0]["name"] in ("Name", "Last Seen")


def test_a_malformed_unvalidated_object_gets_an_invalid_row_not_an_error() -> None:
    good = {"metadata": meta("ok"), "spec": {"template": {"spec": {"containers": [
        {"name": "c", "image": "i"}]}}}, "status": {"numberReady": 2}}
    bad = {"metadata": meta("broken"), "spec": {"template": {"spec": {"containers": [7]}}}}
    out = table("daemonsets", [good, bad], now=NOW)
    assert out["rows"][0]["cells"][3] == 2
    assert out["rows"][1]["cells"][0] == "broken"
    assert set(out["rows"][1]["cells"][1:]) == {"<invalid>"}
    assert len(out["rows"][1]["cells"]) == len(out["columnDefinitions"])
