"""admit(): Kubernetes defaulting, validation with field causes, warnings, update rules."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from control.errors import BadRequest, Invalid
from control.models.validation import admit, copy_json

Obj = dict[str, Any]


def pod(**spec: Any) -> Obj:
    base: Obj = {"containers": [{"name": "app", "image": "knet/whoami:1"}]}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web"}},
            "spec": {**base, **spec}}


def deployment(**spec: Any) -> Obj:
    base: Obj = {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"}, "spec": {**base, **spec}}


def service(**spec: Any) -> Obj:
    base: Obj = {"selector": {"app": "web"}, "ports": [{"port": 80}]}
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"}, "spec": {**base, **spec}}


def invalid(resource: str, obj: Obj, old: Obj | None = None) -> Invalid:
    with pytest.raises(Invalid) as err:
        admit(resource, obj, old=old)
    assert err.value.code == 422
    return err.value


def causes(err: Invalid) -> dict[str, str]:
    return {c.field: c.reason for c in err.causes}


# ---- defaulting ------------------------------------------------------------------------

def test_pod_defaults() -> None:
    p = pod()
    p["spec"]["containers"][0]["ports"] = [{"containerPort": 80}]
    p["spec"]["containers"][0]["livenessProbe"] = {"httpGet": {"port": 80}}
    p["spec"]["containers"].append({"name": "side", "image": "busybox"})
    out, warnings = admit("pods", p)
    spec = out["spec"]
    assert (spec["restartPolicy"], spec["dnsPolicy"], spec["terminationGracePeriodSeconds"]) \
        == ("Always", "ClusterFirst", 30)
    app, side = spec["containers"]
    assert app["imagePullPolicy"] == "IfNotPresent" and side["imagePullPolicy"] == "Always"
    assert app["terminationMessagePath"] == "/dev/termination-log"
    assert app["ports"][0]["protocol"] == "TCP" and app["resources"] == {}
    probe = app["livenessProbe"]
    assert (probe["periodSeconds"], probe["timeoutSeconds"], probe["successThreshold"],
            probe["failureThreshold"]) == (10, 1, 1, 3)
    assert probe["httpGet"]["path"] == "/" and probe["httpGet"]["scheme"] == "HTTP"
    assert out["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    assert "tolerations" not in spec      # knet's node lifecycle evicts on its own grace
    assert warnings == []


def test_pod_spec_defaults_as_kube_apiserver_shows_them() -> None:
    """SetDefaults_PodSpec on pods and templates; SetDefaults_Pod's extras on pods only."""
    limits = {"limits": {"cpu": "1"}}
    images = ["nginx", "nginx:latest", "nginx:1.27", "nginx@sha256:ab", "nginx:latest@sha256:ab",
              "registry:5000/app", "registry:5000/app:v2"]
    containers = [{"name": f"c{i}", "image": image, "resources": dict(limits)}
                  for i, image in enumerate(images)]
    volumes = [{"name": "d", "downwardAPI": {"items": []}},
               {"name": "p", "projected": {"sources": [{"serviceAccountToken": {
                   "path": "token"}}]}},
               {"name": "h", "hostPath": {"path": "/tmp"}}]
    out, _ = admit("pods", pod(containers=containers, volumes=volumes))
    spec = out["spec"]
    assert spec["securityContext"] == {} and spec["enableServiceLinks"] is True
    assert spec["schedulerName"] == "default-scheduler"
    assert [c["imagePullPolicy"] for c in spec["containers"]] == [
        "Always", "Always", "IfNotPresent", "IfNotPresent", "Always", "Always", "IfNotPresent"]
    assert spec["containers"][0]["resources"]["requests"] == {"cpu": "1"}
    d, p, h = spec["volumes"]
    assert d["downwardAPI"]["defaultMode"] == 420 and p["projected"]["defaultMode"] == 420
    assert p["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"] == 3600
    assert h["hostPath"]["type"] == ""
    tpl = deployment()
    tpl["spec"]["template"]["spec"]["containers"][0]["resources"] = dict(limits)
    template = admit("deployments", tpl)[0]["spec"]["template"]["spec"]
    assert template["securityContext"] == {} and "enableServiceLinks" not in template
    assert "requests" not in template["containers"][0]["resources"]


def test_workload_defaults_as_apps_and_batch_v1_set_them() -> None:
    tpl = {"metadata": {"labels": {"app": "w"}},
           "spec": {"containers": [{"name": "c", "image": "x:1"}], "restartPolicy": "Never"}}
    ds = admit("daemonsets", {"apiVersion": "apps/v1", "kind": "DaemonSet",
                              "metadata": {"name": "d", "namespace": "default"},
                              "spec": {"selector": {"matchLabels": {"app": "w"}},
                                       "template": {**tpl, "spec": {
                                           "containers": tpl["spec"]["containers"]}}}})[0]
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {
        "maxUnavailable": 1, "maxSurge": 0}} and ds["spec"]["revisionHistoryLimit"] == 10
    sts = admit("statefulsets", {"apiVersion": "apps/v1", "kind": "StatefulSet",
                                 "metadata": {"name": "s", "namespace": "default"},
                                 "spec": {"selector": {"matchLabels": {"app": "w"}},
                                          "serviceName": "s", "template": {
                                              **tpl, "spec": {"containers": tpl["spec"][
                                                  "containers"]}}}})[0]["spec"]
    assert (sts["replicas"], sts["podManagementPolicy"], sts["updateStrategy"]) == (
        1, "OrderedReady", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    assert sts["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain",
                                                           "whenScaled": "Retain"}
    job = admit("jobs", {"apiVersion": "batch/v1", "kind": "Job",
                         "metadata": {"name": "j", "namespace": "default"},
                         "spec": {"template": tpl}})[0]
    spec = job["spec"]
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"],
            spec["completionMode"], spec["suspend"], spec["podReplacementPolicy"]) == (
        1, 1, 6, "NonIndexed", False, "TerminatingOrFailed")
    assert job["metadata"]["labels"] == {"app": "w"}
    cj = admit("cronjobs", {"apiVersion": "batch/v1", "kind": "CronJob",
                            "metadata": {"name": "c", "namespace": "default"},
                            "spec": {"schedule": "* * * * *",
                                     "jobTemplate": {"spec": {"template": tpl}}}})[0]["spec"]
    assert (cj["concurrencyPolicy"], cj["suspend"], cj["successfulJobsHistoryLimit"],
            cj["failedJobsHistoryLimit"]) == ("Allow", False, 3, 1)
    always = {"apiVersion": "batch/v1", "kind": "Job",
              "metadata": {"name": "j", "namespace": "default"},
              "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}}
    err = invalid("jobs", always)
    assert str(err).endswith('spec.template.spec.restartPolicy: Unsupported value: "Always": '
                             'supported values: "OnFailure", "Never"')


def test_admit_does_not_touch_its_input_and_keeps_unknown_fields() -> None:
    p = pod(futureField={"x": [1, 2]})
    p["metadata"]["someNewMeta"] = "kept"
    before = copy_json(p)
    out, _ = admit("pods", p)
    assert p == before
    assert out["spec"]["futureField"] == {"x": [1, 2]}
    assert out["metadata"]["someNewMeta"] == "kept"
    assert out["spec"]["restartPolicy"] == "Always"


def test_defaulting_is_idempotent() -> None:
    for resource, obj in (("deployments", deployment()), ("services", service())):
        once, _ = admit(resource, obj)
        assert admit(resource, once)[0] == once


def test_service_port_names_are_dns_labels_like_kubectl_create_service_makes() -> None:
    out, _ = admit("services", service(ports=[{"port": 80, "name": "80-80"}]))
    assert out["spec"]["ports"][0]["name"] == "80-80"
    with pytest.raises(Invalid) as err:
        admit("services", service(ports=[{"port": 80, "name": "Web_Port"}]))
    assert err.value.causes[0].field == "spec.ports[0].name"


def test_service_defaults() -> None:
    out, _ = admit("services", service(sessionAffinity="ClientIP",
                                       ports=[{"port": 80, "name": "http"},
                                              {"port": 53, "name": "dns", "protocol": "UDP",
                                               "targetPort": 5353}]))
    spec = out["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["ports"][0] == {"port": 80, "name": "http", "protocol": "TCP", "targetPort": 80}
    assert spec["ports"][1]["targetPort"] == 5353 and spec["ports"][1]["protocol"] == "UDP"
    assert spec["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    assert admit("services", service())[0]["spec"]["sessionAffinity"] == "None"


def test_deployment_defaults() -> None:
    out, _ = admit("deployments", deployment())
    spec = out["spec"]
    assert spec["replicas"] == 1 and spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    assert spec["strategy"] == {"type": "RollingUpdate",
                                "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert spec["template"]["spec"]["restartPolicy"] == "Always"
    assert spec["template"]["spec"]["containers"][0]["imagePullPolicy"] == "Always"
    assert "tolerations" not in spec["template"]["spec"]      # admission adds those to pods
    recreate, _ = admit("deployments", deployment(strategy={"type": "Recreate"}))
    assert recreate["spec"]["strategy"] == {"type": "Recreate"}


def test_replicaset_and_rc_defaults() -> None:
    rs = deployment()
    rs["kind"] = "ReplicaSet"
    assert admit("replicasets", rs)[0]["spec"]["replicas"] == 1
    rc = {"apiVersion": "v1", "kind": "ReplicationController",
          "metadata": {"name": "web", "namespace": "default"},
          "spec": {"template": {"metadata": {"labels": {"app": "web"}},
                                "spec": {"containers": [{"name": "c", "image": "i"}]}}}}
    out, _ = admit("replicationcontrollers", rc)
    assert out["spec"]["selector"] == {"app": "web"} and out["spec"]["replicas"] == 1
    assert out["metadata"]["labels"] == {"app": "web"}


def test_secret_string_data_folds_into_data() -> None:
    s = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "d"},
         "data": {"a": base64.b64encode(b"old").decode()},
         "stringData": {"a": "new", "b": "plain"}}
    out, _ = admit("secrets", s)
    assert "stringData" not in out and out["type"] == "Opaque"
    assert {k: base64.b64decode(v) for k, v in out["data"].items()} == {"a": b"new",
                                                                        "b": b"plain"}


def test_namespace_defaults() -> None:
    out, _ = admit("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                  "metadata": {"name": "team-a"}})
    assert out["spec"] == {"finalizers": ["kubernetes"]} and out["status"]["phase"] == "Active"


# ---- validation ----------------------------------------------------------------------------

def test_selector_must_match_template_labels() -> None:
    d = deployment()
    d["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    err = invalid("deployments", d)
    assert causes(err) == {"spec.template.metadata.labels": "FieldValueInvalid"}
    assert err.message == ('Deployment.apps "web" is invalid: spec.template.metadata.labels: '
                           'Invalid value: {"app":"other"}: `selector` does not match '
                           'template `labels`')
    status = err.status()
    assert status["details"]["kind"] == "Deployment" and status["details"]["group"] == "apps"
    assert status["details"]["causes"][0]["field"] == "spec.template.metadata.labels"


@pytest.mark.parametrize("spec,field,reason", [
    ({"selector": None}, "spec.selector", "FieldValueRequired"),
    ({"selector": {}}, "spec.selector", "FieldValueInvalid"),
    ({"replicas": -1}, "spec.replicas", "FieldValueInvalid"),
    ({"revisionHistoryLimit": -2}, "spec.revisionHistoryLimit", "FieldValueInvalid"),
    ({"strategy": {"type": "BlueGreen"}}, "spec.strategy.type", "FieldValueNotSupported"),
    ({"strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}},
     "spec.strategy.rollingUpdate", "FieldValueForbidden"),
    ({"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}},
     "spec.strategy.rollingUpdate.maxUnavailable", "FieldValueInvalid"),
    ({"strategy": {"rollingUpdate": {"maxSurge": "abc"}}},
     "spec.strategy.rollingUpdate.maxSurge", "FieldValueInvalid"),
    ({"strategy": {"rollingUpdate": {"maxUnavailable": "150%"}}},
     "spec.strategy.rollingUpdate.maxUnavailable", "FieldValueInvalid"),
    ({"progressDeadlineSeconds": 5, "minReadySeconds": 10},
     "spec.progressDeadlineSeconds", "FieldValueInvalid"),
])
def test_deployment_invalid(spec: Obj, field: str, reason: str) -> None:
    assert causes(invalid("deployments", deployment(**spec))) == {field: reason}


def test_template_restart_policy_must_be_always() -> None:
    d = deployment()
    d["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    err = invalid("deployments", d)
    assert causes(err) == {"spec.template.spec.restartPolicy": "FieldValueNotSupported"}
    assert 'supported values: "Always"' in err.causes[0].message


@pytest.mark.parametrize("container,field,reason", [
    ({"name": "Bad_Name", "image": "i"}, "spec.containers[0].name", "FieldValueInvalid"),
    ({"name": "app"}, "spec.containers[0].image", "FieldValueRequired"),
    ({"name": "app", "image": "i", "ports": [{"containerPort": 0}]},
     "spec.containers[0].ports[0].containerPort", "FieldValueInvalid"),
    ({"name": "app", "image": "i", "ports": [{"containerPort": 70000}]},
     "spec.containers[0].ports[0].containerPort", "FieldValueInvalid"),
    ({"name": "app", "image": "i", "ports": [{"containerPort": 80, "protocol": "ICMP"}]},
     "spec.containers[0].ports[0].protocol", "FieldValueNotSupported"),
    ({"name": "app", "image": "i", "ports": [{"containerPort": 80, "name": "http_port"}]},
     "spec.containers[0].ports[0].name", "FieldValueInvalid"),
    ({"name": "app", "image": "i", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]},
     "spec.containers[0].volumeMounts[0].name", "FieldValueNotFound"),
    ({"name": "app", "image": "i", "livenessProbe": {"periodSeconds": 3}},
     "spec.containers[0].livenessProbe", "FieldValueRequired"),
    ({"name": "app", "image": "i", "readinessProbe": {"tcpSocket": {"port": "Not-Valid"}}},
     "spec.containers[0].readinessProbe.tcpSocket.port", "FieldValueInvalid"),
    ({"name": "app", "image": "i", "env": [{"name": "1X", "value": "v"}]},
     "spec.containers[0].env[0].name", "FieldValueInvalid"),
    ({"name": "app", "image": "i",
      "env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}]},
     "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath", "FieldValueNotSupported"),
])
def test_container_invalid(container: Obj, field: str, reason: str) -> None:
    assert causes(invalid("pods", pod(containers=[container]))) == {field: reason}


def test_sctp_is_refused_with_a_knet_message() -> None:
    err = invalid("pods", pod(containers=[{"name": "a", "image": "i", "ports": [
        {"containerPort": 80, "protocol": "SCTP"}]}]))
    assert err.causes[0].field == "spec.containers[0].ports[0].protocol"
    assert "SCTP is not supported by knet" in err.causes[0].message
    err = invalid("services", service(ports=[{"port": 80, "protocol": "SCTP"}]))
    assert err.causes[0].field == "spec.ports[0].protocol"


def test_duplicate_container_names_and_many_causes_at_once() -> None:
    err = invalid("pods", pod(containers=[{"name": "a", "image": "i"},
                                          {"name": "a", "image": "i"}],
                              restartPolicy="Sometimes"))
    assert causes(err) == {"spec.containers[1].name": "FieldValueDuplicate",
                           "spec.restartPolicy": "FieldValueNotSupported"}
    assert err.message.startswith('Pod "web-1" is invalid: [spec.containers[1].name: '
                                  'Duplicate value: "a", spec.restartPolicy: Unsupported')


def test_pod_without_containers_and_bad_metadata() -> None:
    p = pod(containers=[])
    p["metadata"]["name"] = "Web_1"
    p["metadata"]["labels"] = {"bad key": "v", "ok": "-bad-"}
    err = invalid("pods", p)
    fields = [c.field for c in err.causes]
    assert "metadata.name" in fields and "spec.containers" in fields
    assert fields.count("metadata.labels") == 2


@pytest.mark.parametrize("spec,field,reason", [
    ({"ports": [{"port": 0, "targetPort": 8080}]}, "spec.ports[0].port", "FieldValueInvalid"),
    ({"ports": [{"port": 80, "targetPort": 70000}]}, "spec.ports[0].targetPort",
     "FieldValueInvalid"),
    ({"ports": [{"port": 80, "nodePort": 70000}], "type": "NodePort"}, "spec.ports[0].nodePort",
     "FieldValueInvalid"),
    ({"ports": [{"port": 80, "nodePort": 30080}]}, "spec.ports[0].nodePort",
     "FieldValueForbidden"),
    ({"ports": [{"port": 80, "name": "a"}, {"port": 81}]}, "spec.ports[1].name",
     "FieldValueRequired"),
    ({"ports": [{"port": 80, "name": "a"}, {"port": 81, "name": "a"}]}, "spec.ports[1].name",
     "FieldValueDuplicate"),
    ({"ports": [{"port": 80, "name": "a"}, {"port": 80, "name": "b"}]}, "spec.ports[1]",
     "FieldValueDuplicate"),
    ({"ports": []}, "spec.ports", "FieldValueRequired"),
    ({"type": "Magic"}, "spec.type", "FieldValueNotSupported"),
    ({"clusterIP": "10.96.0.300"}, "spec.clusterIP", "FieldValueInvalid"),
    ({"clusterIPs": ["fe80::zz"]}, "spec.clusterIPs[0]", "FieldValueInvalid"),
    ({"clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.6"]}, "spec.clusterIPs",
     "FieldValueInvalid"),
    ({"type": "ExternalName"}, "spec.externalName", "FieldValueRequired"),
    ({"sessionAffinity": "Cookie"}, "spec.sessionAffinity", "FieldValueNotSupported"),
    ({"sessionAffinity": "ClientIP",
      "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}},
     "spec.sessionAffinityConfig.clientIP.timeoutSeconds", "FieldValueInvalid"),
])
def test_service_invalid(spec: Obj, field: str, reason: str) -> None:
    assert causes(invalid("services", service(**spec))) == {field: reason}


def test_headless_service_without_ports_and_node_port_in_range() -> None:
    admit("services", service(clusterIP="None", ports=None))
    out, _ = admit("services", service(type="NodePort",
                                       ports=[{"port": 80, "nodePort": 30080}]))
    assert out["spec"]["ports"][0]["nodePort"] == 30080


def test_service_names_are_dns_labels_other_names_subdomains() -> None:
    svc = service()
    svc["metadata"]["name"] = "web.v1"
    assert causes(invalid("services", svc)) == {"metadata.name": "FieldValueInvalid"}
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": "web.v1", "namespace": "default"}, "data": {"a.txt": "x"}}
    admit("configmaps", cm)


def test_other_kinds_invalid() -> None:
    ns = {"metadata": {"name": "x", "namespace": "default"}}
    assert causes(invalid("nodes", ns)) == {"metadata.namespace": "FieldValueForbidden"}
    bad = {"metadata": {"name": "s", "namespace": "d"}, "data": {"k": "not base64!"}}
    err = invalid("secrets", bad)
    assert causes(err) == {"data[k]": "FieldValueInvalid"} and "redacted" in err.message
    cm = {"metadata": {"name": "c", "namespace": "d"}, "data": {"bad/key": "v"}}
    assert causes(invalid("configmaps", cm)) == {"data[bad/key]": "FieldValueInvalid"}
    rs = deployment(replicas=-1)
    assert causes(invalid("replicasets", rs)) == {"spec.replicas": "FieldValueInvalid"}
    assert causes(invalid("pods", {"metadata": {"namespace": "d"}, "spec": {
        "containers": [{"name": "a", "image": "i"}]}})) == {"metadata.name":
                                                            "FieldValueRequired"}
    with pytest.raises(BadRequest):
        admit("pods", ["not", "an", "object"])  # type: ignore[arg-type]


# ---- warnings ------------------------------------------------------------------------------

def test_warnings_for_fields_knet_ignores_keep_the_fields() -> None:
    d = deployment()
    tpl = d["spec"]["template"]["spec"]
    tpl["affinity"] = {"nodeAffinity": {"x": 1}}
    tpl["containers"][0]["securityContext"] = {"runAsUser": 1000, "seccompProfile": {"x": 1}}
    tpl["containers"][0]["resources"] = {"limits": {"memory": "64Mi", "nvidia.com/gpu": "1"}}
    tpl["volumes"] = [{"name": "data", "nfs": {"server": "nfs.example", "path": "/"}}]
    out, warnings = admit("deployments", d)
    assert sorted(warnings) == sorted([
        "spec.template.spec.affinity: ignored by knet's scheduler, except nodeAffinity."
        "requiredDuringSchedulingIgnoredDuringExecution",
        "spec.template.spec.containers[0].securityContext.seccompProfile: ignored by knet's "
        "runtime",
        "spec.template.spec.containers[0].resources.limits.nvidia.com/gpu: not enforced: knet "
        "enforces the cpu and memory limits only",
        ("spec.template.spec.volumes[0].nfs: volume type not supported by "
        "knet: mounted as an empty directory")])
    out_tpl = out["spec"]["template"]["spec"]
    assert out_tpl["affinity"] == {"nodeAffinity": {"x": 1}}
    assert out_tpl["containers"][0]["securityContext"] == {"runAsUser": 1000,
                                                           "seccompProfile": {"x": 1}}
    p = pod(volumes=[{"name": "m", "emptyDir": {"medium": "Memory"}}])
    p["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": 8080}]
    p["spec"]["containers"][0]["lifecycle"] = {"preStop": {"exec": {"command": ["x"]}},
                                               "postStart": {"exec": {"command": ["y"]}}}
    _, pod_warnings = admit("pods", p)
    assert sorted(w.split(":")[0] for w in pod_warnings) == [  # both hooks run: no warning
        "spec.containers[0].ports[0].hostPort"]  # emptyDir medium Memory is a tmpfs: no warning
    _, svc_warnings = admit("services", service(type="LoadBalancer", loadBalancerSourceRanges=[
        "10.0.0.0/8"]))
    assert svc_warnings == []    # LoadBalancers are served now (control/controllers/loadbalancer)


# ---- updates -------------------------------------------------------------------------------

def stored(resource: str, obj: Obj) -> Obj:
    return admit(resource, obj)[0]


def test_service_cluster_ip_is_immutable_but_carried_forward() -> None:
    old = stored("services", service(type="NodePort", clusterIP="10.96.0.20",
                                     ports=[{"port": 80, "nodePort": 30080}]))
    err = invalid("services", service(clusterIP="10.96.0.21"), old=old)
    assert causes(err) == {"spec.clusterIP": "FieldValueInvalid"}
    assert "field is immutable" in err.message
    out, _ = admit("services", service(type="NodePort"), old=old)
    assert out["spec"]["clusterIP"] == "10.96.0.20"
    assert out["spec"]["clusterIPs"] == ["10.96.0.20"]
    assert out["spec"]["ports"][0]["nodePort"] == 30080


def test_deployment_selector_is_immutable() -> None:
    old = stored("deployments", deployment())
    new = deployment(selector={"matchLabels": {"app": "web", "v": "2"}})
    new["spec"]["template"]["metadata"]["labels"]["v"] = "2"
    assert causes(invalid("deployments", new, old=old)) == {"spec.selector":
                                                            "FieldValueInvalid"}
    same = copy_json(old)
    same["spec"]["replicas"] = 5
    assert admit("deployments", same, old=old)[0]["spec"]["replicas"] == 5


def test_pod_update_rules() -> None:
    old = stored("pods", pod(tolerations=[{"key": "a", "operator": "Exists"}]))
    new = copy_json(old)
    new["spec"]["containers"][0]["image"] = "knet/whoami:2"
    new["spec"]["tolerations"].append({"key": "k", "operator": "Exists",
                                       "effect": "NoSchedule"})
    new["spec"]["nodeName"] = "node-1"                 # binding an unbound pod
    new["metadata"]["labels"]["extra"] = "yes"
    new["status"] = {"phase": "Running"}
    admit("pods", new, old=old)
    changed = copy_json(old)
    changed["spec"]["containers"][0]["ports"] = [{"containerPort": 80}]
    err = invalid("pods", changed, old=old)
    assert causes(err) == {"spec": "FieldValueForbidden"}
    assert "spec.containers" in err.message
    dropped = copy_json(old)
    dropped["spec"]["tolerations"] = []
    assert causes(invalid("pods", dropped, old=old)) == {"spec.tolerations":
                                                         "FieldValueForbidden"}
    bound = stored("pods", pod(nodeName="node-1"))
    moved = copy_json(bound)
    moved["spec"]["nodeName"] = "node-2"
    assert causes(invalid("pods", moved, old=bound)) == {"spec": "FieldValueForbidden"}


def test_immutable_configmap() -> None:
    old = stored("configmaps", {"metadata": {"name": "c", "namespace": "d"},
                                "data": {"a": "1"}, "immutable": True})
    new = copy_json(old)
    new["data"]["a"] = "2"
    assert causes(invalid("configmaps", new, old=old)) == {"data": "FieldValueForbidden"}


def test_pod_stored_before_a_default_existed_can_still_be_updated() -> None:
    old = stored("pods", pod())
    for c in old["spec"]["containers"]:
        del c["terminationMessagePolicy"]
    del old["spec"]["enableServiceLinks"]
    new = copy_json(old)
    new["metadata"]["labels"]["v"] = "2"
    out, _ = admit("pods", new, old=old)
    assert out["spec"]["enableServiceLinks"] is True


def test_copy_json_unshares_and_copies_deeply() -> None:
    shared = {"a": [1, {"b": 2}]}
    obj = {"x": shared, "y": shared}
    out = copy_json(obj)
    assert out == obj and out["x"] is not out["y"] and out["x"]["a"][1] is not shared["a"][1]


def test_kinds_knet_does_not_run_are_stored_with_a_warning() -> None:
    sts = deployment()
    sts["kind"] = "StatefulSet"
    out, warnings = admit("statefulsets", sts)
    assert warnings == []      # knet runs StatefulSets (control/controllers/statefulset.py)
    assert out["spec"]["template"]["spec"]["restartPolicy"] == "Always"
    assert admit("statefulsets", out, old=out)[1] == []
    sts["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    assert causes(invalid("statefulsets", sts)) == {"spec.template.metadata.labels":
                                                    "FieldValueInvalid"}
    job = {"metadata": {"name": "j", "namespace": "d"}, "spec": {"template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}
    assert admit("jobs", job)[1] == []                  # knet runs Jobs now


def test_port_names_are_unique_per_container() -> None:
    one = {"name": "a", "image": "i", "ports": [{"containerPort": 80, "name": "http"},
                                                {"containerPort": 81, "name": "http"}]}
    assert causes(invalid("pods", pod(containers=[one]))) == {
        "spec.containers[0].ports[1].name": "FieldValueDuplicate"}
    two = [{"name": "a", "image": "i", "ports": [{"containerPort": 80, "name": "http"}]},
           {"name": "b", "image": "i", "ports": [{"containerPort": 81, "name": "http"}]}]
    admit("pods", pod(containers=two))


def test_host_network_ports_default_and_must_match_as_kube_apiserver_says() -> None:
    """SetDefaults_PodSpec makes hostPort = containerPort on the host network (templates too);
    validateHostNetwork refuses another hostPort, in kube-apiserver's words."""
    out, warnings = admit("pods", pod(hostNetwork=True, containers=[
        {"name": "a", "image": "i", "ports": [{"containerPort": 8080}]}]))
    assert out["spec"]["containers"][0]["ports"][0]["hostPort"] == 8080
    assert warnings == []                  # knet runs it in the node's netns: nothing ignored
    err = invalid("pods", pod(hostNetwork=True, containers=[
        {"name": "a", "image": "i", "ports": [{"containerPort": 8080, "hostPort": 80}]}]))
    assert err.message == ('Pod "web-1" is invalid: spec.containers[0].ports[0].hostPort: '
                           'Invalid value: 80: must match `containerPort` when `hostNetwork` '
                           'is true')
    d = deployment()
    d["spec"]["template"]["spec"]["hostNetwork"] = True
    d["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": 53}]
    out, _ = admit("deployments", d)
    assert out["spec"]["template"]["spec"]["containers"][0]["ports"][0]["hostPort"] == 53
