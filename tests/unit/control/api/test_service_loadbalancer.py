"""A LoadBalancer Service's fields as kube-apiserver admits them: loadBalancerSourceRanges
that are not CIDRs are a 422 in its words (with the historical capital-L field path), fields
of LoadBalancers forbidden on other types, `allocateLoadBalancerNodePorts: false` allocating
no nodePorts, and healthCheckNodePort allocated for LoadBalancer + Local, kept across
updates, immutable while needed, released when no longer needed."""

from __future__ import annotations

from typing import Any

import pytest

from control.api.local import LocalClient
from control.errors import Invalid


def lb(name: str, type: str = "LoadBalancer", **spec: Any) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": type, "selector": {"app": name},
                     "ports": [{"port": 80, "targetPort": 8080}], **spec}}


async def test_source_ranges_that_are_not_cidrs_are_422(client: LocalClient) -> None:
    with pytest.raises(Invalid) as err:
        await client.create("services", lb("bad", loadBalancerSourceRanges=[
            "10.0.0.0/8", "not-a-cidr", "10.1.2.3"]))
    assert err.value.code == 422
    assert str(err.value) == (
        'Service "bad" is invalid: [spec.LoadBalancerSourceRanges[1]: Invalid value: '
        '"not-a-cidr": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64), '
        'spec.LoadBalancerSourceRanges[2]: Invalid value: "10.1.2.3": must be a valid CIDR '
        'value, (e.g. 10.9.8.0/24 or 2001:db8::/64)]')
    ok = await client.create("services", lb("ok", loadBalancerSourceRanges=[" 10.0.0.0/8 "]))
    assert ok["spec"]["loadBalancerSourceRanges"] == [" 10.0.0.0/8 "]   # space-padding is legal
    with pytest.raises(Invalid, match=r"spec.LoadBalancerSourceRanges: Forbidden: may only be "
                                      r"used when `type` is 'LoadBalancer'"):
        await client.create("services", lb("np", "NodePort",
                                           loadBalancerSourceRanges=["10.0.0.0/8"]))
    with pytest.raises(Invalid, match=r"load-balancer-source-ranges\]: Invalid value: "
                                      r'"nope": must be a valid CIDR'):
        body = lb("ann")
        body["metadata"]["annotations"] = {
            "service.beta.kubernetes.io/load-balancer-source-ranges": "10.0.0.0/8, nope"}
        await client.create("services", body)


async def test_load_balancer_fields_only_on_load_balancers(client: LocalClient) -> None:
    with pytest.raises(Invalid, match=r"spec.allocateLoadBalancerNodePorts: Forbidden: may only "
                                      r"be used when `type` is 'LoadBalancer'"):
        await client.create("services", lb("a", "NodePort", allocateLoadBalancerNodePorts=False))
    with pytest.raises(Invalid, match=r"spec.healthCheckNodePort: Invalid value: 31000: may "
                                      r"only be set when `type` is 'LoadBalancer' and "
                                      r"`externalTrafficPolicy` is 'Local'"):
        await client.create("services", lb("h", healthCheckNodePort=31000))
    with pytest.raises(Invalid, match=r'spec.loadBalancerIP: Invalid value: "1.2.3": must be a '
                                      r"valid IP address"):
        await client.create("services", lb("ip", loadBalancerIP="1.2.3"))


async def test_allocate_load_balancer_node_ports_false(client: LocalClient) -> None:
    out = await client.create("services", lb("nonp", allocateLoadBalancerNodePorts=False))
    assert "nodePort" not in out["spec"]["ports"][0]
    asked = await client.create("services", lb("asked", allocateLoadBalancerNodePorts=False,
                                               ports=[{"port": 80, "nodePort": 31234}]))
    assert asked["spec"]["ports"][0]["nodePort"] == 31234   # one asked for is still allocated
    both = await client.create("services", lb("both"))
    assert 30000 <= both["spec"]["ports"][0]["nodePort"] <= 32767


async def test_health_check_node_port_lifecycle(client: LocalClient) -> None:
    out = await client.create("services", lb("web", externalTrafficPolicy="Local"))
    hc = out["spec"]["healthCheckNodePort"]
    assert 30000 <= hc <= 32767 and hc != out["spec"]["ports"][0]["nodePort"]
    kept = await client.patch("services", "web", {"spec": {"ports": [
        {"port": 80, "targetPort": 9090}]}}, patch_type="strategic", namespace="default")
    assert kept["spec"]["healthCheckNodePort"] == hc
    with pytest.raises(Invalid, match="cannot change healthCheckNodePort on loadBalancer "
                                      "service with externalTraffic=Local during update"):
        await client.patch("services", "web", {"spec": {"healthCheckNodePort": hc + 1}},
                           patch_type="merge", namespace="default")
    with pytest.raises(Invalid, match="provided port is already allocated"):
        await client.create("services", lb("taken", "NodePort", ports=[
            {"port": 80, "nodePort": hc}]))
    cluster = await client.patch("services", "web", {"spec": {
        "externalTrafficPolicy": "Cluster"}}, patch_type="merge", namespace="default")
    assert "healthCheckNodePort" not in cluster["spec"]
    reuse = await client.create("services", lb("reuse", "NodePort", ports=[
        {"port": 80, "nodePort": hc}]))                     # released: free for others
    assert reuse["spec"]["ports"][0]["nodePort"] == hc
    asked = await client.create("services", lb("asked", externalTrafficPolicy="Local",
                                               healthCheckNodePort=32100))
    assert asked["spec"]["healthCheckNodePort"] == 32100
    await client.delete("services", "asked", namespace="default")
    again = await client.create("services", lb("again", "NodePort", ports=[
        {"port": 80, "nodePort": 32100}]))
    assert again["spec"]["ports"][0]["nodePort"] == 32100
