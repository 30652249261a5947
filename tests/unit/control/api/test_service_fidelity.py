"""Services as kube-apiserver keeps them: SetDefaults_Service (session affinity config
cleared for None, traffic policies, IP families), `status.loadBalancer: {}`, and type changes
(nodePorts allocated going to NodePort and released going back, fields of the old type
dropped), with the allocator's range and duplicate messages."""

from __future__ import annotations

from typing import Any

import pytest

from control.api.local import LocalClient
from control.errors import Invalid


def svc(name: str, type: str = "ClusterIP", **spec: Any) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": type, "selector": {"app": name},
                     "ports": [{"port": 80, "targetPort": 8080}], **spec}}


async def test_session_affinity_none_clears_its_config(client: LocalClient) -> None:
    """knet's lab 07 tells users to run exactly this patch."""
    await client.create("services", svc("s", sessionAffinity="ClientIP",
                                        sessionAffinityConfig={"clientIP": {
                                            "timeoutSeconds": 30}}))
    out = await client.patch("services", "s", {"spec": {"sessionAffinity": "None"}},
                             patch_type="strategic", namespace="default")
    assert out["spec"]["sessionAffinity"] == "None"
    assert "sessionAffinityConfig" not in out["spec"]
    out = await client.patch("services", "s", {"spec": {"sessionAffinity": "ClientIP"}},
                             patch_type="strategic", namespace="default")
    assert out["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}


async def test_service_defaults_and_status(client: LocalClient) -> None:
    plain = await client.create("services", svc("plain", ports=[{"port": 80,
                                                                  "targetPort": 0}]))
    assert plain["status"] == {"loadBalancer": {}}
    spec = plain["spec"]
    assert (spec["internalTrafficPolicy"], spec["ipFamilies"], spec["ipFamilyPolicy"]) == (
        "Cluster", ["IPv4"], "SingleStack")
    assert "externalTrafficPolicy" not in spec and spec["ports"][0]["targetPort"] == 80
    assert (await client.get("services", "plain", namespace="default"))["status"] == {
        "loadBalancer": {}}
    lb = (await client.create("services", svc("lb", "LoadBalancer")))["spec"]
    assert (lb["externalTrafficPolicy"], lb["allocateLoadBalancerNodePorts"]) == ("Cluster",
                                                                                 True)
    ext = (await client.create("services", svc("ext", externalIPs=["192.0.2.1"])))["spec"]
    assert ext["externalTrafficPolicy"] == "Cluster"
    body = svc("hl", clusterIP="None")
    del body["spec"]["selector"]
    headless = (await client.create("services", body))["spec"]
    assert (headless["ipFamilyPolicy"], headless["ipFamilies"]) == ("RequireDualStack",
                                                                     ["IPv4"])
    name = await client.create("services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "n"},
        "spec": {"type": "ExternalName", "externalName": "example.com"}})
    assert "ipFamilies" not in name["spec"] and "internalTrafficPolicy" not in name["spec"]
    with pytest.raises(Invalid, match="not configured for dual-stack"):
        await client.create("services", svc("dual", ipFamilyPolicy="RequireDualStack"))
    with pytest.raises(Invalid, match=r'ipFamilies\[0\]: Invalid value: "IPv6": not '
                                      "configured on this cluster"):
        await client.create("services", svc("six", ipFamilies=["IPv6"]))
    with pytest.raises(Invalid, match="may only be set for externally-accessible services"):
        await client.create("services", svc("etp", externalTrafficPolicy="Local"))


async def test_type_change_allocates_and_releases_node_ports(client: LocalClient) -> None:
    await client.create("services", svc("s"))
    up = await client.patch("services", "s", {"spec": {"type": "NodePort"}},
                            patch_type="strategic", namespace="default")
    port = up["spec"]["ports"][0]["nodePort"]
    assert 30000 <= port <= 32767
    stored = await client.get("services", "s", namespace="default")
    assert stored["spec"]["ports"][0]["nodePort"] == port
    assert stored["spec"]["externalTrafficPolicy"] == "Cluster"
    with pytest.raises(Invalid) as err:
        await client.create("services", svc("t", "NodePort", ports=[{"port": 80,
                                                                      "nodePort": port}]))
    assert str(err.value) == (f'Service "t" is invalid: spec.ports[0].nodePort: Invalid '
                              f"value: {port}: provided port is already allocated")
    down = await client.patch("services", "s", {"spec": {"type": "ClusterIP"}},
                              patch_type="merge", namespace="default")
    assert "nodePort" not in down["spec"]["ports"][0]
    assert "externalTrafficPolicy" not in down["spec"]
    taken = await client.create("services", svc("t", "NodePort", ports=[{
        "port": 80, "nodePort": port}]))
    assert taken["spec"]["ports"][0]["nodePort"] == port         # released


async def test_node_port_out_of_range_has_kube_apiserver_message(client: LocalClient) -> None:
    with pytest.raises(Invalid) as err:
        await client.create("services", svc("s", "NodePort", ports=[{"port": 80,
                                                                      "nodePort": 40000}]))
    assert str(err.value) == (
        'Service "s" is invalid: spec.ports[0].nodePort: Invalid value: 40000: provided port '
        "is not in the valid range. The range of valid ports is 30000-32767")
    assert err.value.causes[0].field == "spec.ports[0].nodePort"
    await client.create("services", svc("s"))
    with pytest.raises(Invalid, match="not in the valid range"):
        await client.patch("services", "s", {"spec": {"type": "NodePort", "ports": [
            {"port": 80, "nodePort": 40000}]}}, patch_type="merge", namespace="default")


async def test_to_external_name_drops_cluster_ip_and_families(client: LocalClient) -> None:
    created = await client.create("services", svc("s", clusterIP="10.96.7.7"))
    assert created["spec"]["clusterIP"] == "10.96.7.7"
    out = await client.patch("services", "s", {"spec": {
        "type": "ExternalName", "externalName": "example.com", "selector": None,
        "ports": None}}, patch_type="merge", namespace="default")
    spec = out["spec"]
    assert not {"clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"} & set(spec)
    again = await client.create("services", svc("t", clusterIP="10.96.7.7"))
    assert again["spec"]["clusterIP"] == "10.96.7.7"              # freed
