"""Which endpoints one node's proxy uses (kube-proxy's CategorizeEndpoints): conditions,
the terminating fallback (KEP-1669), internal/external traffic policies, PreferClose, the
labels kube-proxy obeys, the algorithm annotation; and what an empty set means (REJECT or
DROP)."""

from __future__ import annotations

from typing import Any

from knet.proxy.config import build_table, service_ports
from knet.proxy.topology import DROP, REJECT, SERVE


def svc(**spec: Any) -> dict[str, Any]:
    meta = {"name": "web", "namespace": "default"}
    for k in ("labels", "annotations"):
        if k in spec:
            meta[k] = spec.pop(k)
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"clusterIP": "10.96.0.50", "ports": [{"port": 80, "targetPort": 8080}],
                     **spec}}


def ep(ip: str, node: str, **conditions: bool) -> dict[str, Any]:
    return {"addresses": [ip], "nodeName": node, "conditions": conditions,
            "targetRef": {"kind": "Pod", "namespace": "default", "name": f"pod-{ip}"}}


def slices(*endpoints: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"metadata": {"name": "web-1", "namespace": "default",
                          "labels": {"kubernetes.io/service-name": "web"}},
             "addressType": "IPv4", "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
             "endpoints": list(endpoints)}]


def ips(service: dict[str, Any], sl: list[dict[str, Any]], node: str = "node-1"):
    (sp,) = service_ports(service, sl, node)
    return [e.ip for e in sp.endpoints], sp.verdict


READY = {"ready": True, "serving": True, "terminating": False}
NOT_READY = {"ready": False, "serving": False, "terminating": False}
TERMINATING = {"ready": False, "serving": True, "terminating": True}
TERMINATING_UNSERVING = {"ready": False, "serving": False, "terminating": True}


def test_only_ready_endpoints_and_a_missing_ready_means_ready() -> None:
    sl = slices(ep("10.244.1.2", "node-1", **READY), ep("10.244.1.3", "node-1", **NOT_READY),
                ep("10.244.2.2", "node-2"), ep("10.244.2.3", "node-2", **TERMINATING))
    assert ips(svc(), sl) == (["10.244.1.2", "10.244.2.2"], SERVE)


def test_no_endpoints_at_all_is_reject() -> None:
    assert ips(svc(), slices()) == ([], REJECT)
    assert ips(svc(), []) == ([], REJECT)
    assert ips(svc(), slices(ep("10.244.1.3", "node-1", **NOT_READY))) == ([], REJECT)


def test_terminating_fallback_only_when_no_ready_endpoint() -> None:
    sl = slices(ep("10.244.1.2", "node-1", **TERMINATING),
                ep("10.244.2.2", "node-2", **TERMINATING_UNSERVING))
    assert ips(svc(), sl) == (["10.244.1.2"], SERVE)
    (sp,) = service_ports(svc(), sl, "node-1")
    assert sp.why == "terminating fallback"
    sl[0]["endpoints"].append(ep("10.244.2.9", "node-2", **READY))
    assert ips(svc(), sl) == (["10.244.2.9"], SERVE)


def test_internal_traffic_policy_local_uses_this_nodes_endpoints_only() -> None:
    sl = slices(ep("10.244.1.2", "node-1", **READY), ep("10.244.2.2", "node-2", **READY))
    local = svc(internalTrafficPolicy="Local")
    assert ips(local, sl, "node-1") == (["10.244.1.2"], SERVE)
    assert ips(local, sl, "node-2") == (["10.244.2.2"], SERVE)
    # a node without a local endpoint DROPs (endpoints exist elsewhere), as kube-proxy does
    assert ips(local, sl, "node-3") == ([], DROP)
    assert ips(local, slices(), "node-3") == ([], REJECT)


def test_internal_local_falls_back_to_local_terminating_endpoints() -> None:
    sl = slices(ep("10.244.1.2", "node-1", **TERMINATING), ep("10.244.2.2", "node-2", **READY))
    assert ips(svc(internalTrafficPolicy="Local"), sl, "node-1") == (["10.244.1.2"], SERVE)


def test_node_port_keeps_cluster_endpoints_when_only_internal_is_local() -> None:
    sl = slices(ep("10.244.1.2", "node-1", **READY), ep("10.244.2.2", "node-2", **READY))
    s = svc(type="NodePort", internalTrafficPolicy="Local")
    s["spec"]["ports"][0]["nodePort"] = 30080
    (sp,) = service_ports(s, sl, "node-3")
    assert (sp.endpoints, sp.verdict) == ((), DROP)
    ext = sp.external_side()
    assert [e.ip for e in ext.endpoints] == ["10.244.1.2", "10.244.2.2"]
    assert ext.verdict == SERVE and ext.key == "default/web@external" != sp.key
    s["spec"]["externalTrafficPolicy"] = "Local"
    (sp,) = service_ports(s, sl, "node-3")
    assert sp.external_side() is sp  # both Local: one set, one key


def test_external_ips_of_a_cluster_ip_service_are_external_traffic() -> None:
    """internalTrafficPolicy governs ClusterIP traffic only: traffic to an externalIP is
    external (externalTrafficPolicy, default Cluster), as kube-proxy categorizes it."""
    sl = slices(ep("10.244.1.2", "node-1", **READY), ep("10.244.2.2", "node-2", **READY))
    s = svc(internalTrafficPolicy="Local", externalIPs=["172.18.100.5"])
    (sp,) = service_ports(s, sl, "node-1")
    assert [e.ip for e in sp.endpoints] == ["10.244.1.2"]
    assert [e.ip for e in sp.external_side().endpoints] == ["10.244.1.2", "10.244.2.2"]


def test_prefer_close_keeps_same_node_endpoints_when_there_are_some() -> None:
    sl = slices(ep("10.244.1.2", "node-1", **READY), ep("10.244.2.2", "node-2", **READY),
                ep("10.244.2.3", "node-2", **READY))
    close = svc(trafficDistribution="PreferClose")
    assert ips(close, sl, "node-2") == (["10.244.2.2", "10.244.2.3"], SERVE)
    assert ips(close, sl, "node-1") == (["10.244.1.2"], SERVE)
    assert ips(close, sl, "node-3") == (["10.244.1.2", "10.244.2.2", "10.244.2.3"], SERVE)
    assert ips(svc(), sl, "node-1")[0] == ["10.244.1.2", "10.244.2.2", "10.244.2.3"]


def test_publish_not_ready_addresses_endpoints_are_used() -> None:
    # the EndpointSlice controller marks them ready: the proxy follows `ready`
    sl = slices(ep("10.244.1.3", "node-1", ready=True, serving=False, terminating=False))
    assert ips(svc(publishNotReadyAddresses=True), sl) == (["10.244.1.3"], SERVE)


def test_services_kube_proxy_must_leave_alone() -> None:
    sl = slices(ep("10.244.1.2", "node-1", **READY))
    other = svc(labels={"service.kubernetes.io/service-proxy-name": "foo-bar"})
    headless = svc(labels={"service.kubernetes.io/headless": ""})
    assert service_ports(other, sl, "node-1") == []
    assert service_ports(headless, sl, "node-1") == []
    table = build_table({"default/web": other}, {"default/web": sl}, "node-1")
    assert dict(table) == {}


def test_algorithm_annotation_and_a_bad_one() -> None:
    sl = slices(ep("10.244.1.2", "node-1", **READY))
    (sp,) = service_ports(svc(annotations={"knet.dev/proxy-algorithm": "source-hash"}), sl)
    assert sp.algorithm == "source-hash"
    (sp,) = service_ports(svc(annotations={"knet.dev/proxy-algorithm": "fastest"}), sl)
    assert sp.algorithm is None  # the cluster's (a warning names the choices)
    (sp,) = service_ports(svc(), sl)
    assert sp.algorithm is None
