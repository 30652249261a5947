"""The north-south status controller: the GatewayClass and IngressClass `knet` made at
start and the class Accepted; a Gateway of the class gets the nodes' InternalIPs as
addresses, Accepted/Programmed, listener conditions and attachedRoutes (hostname
intersection: a route whose hostnames miss every listener attaches to none); an HTTPS
listener is not accepted; an Ingress of class knet gets status.loadBalancer; others none."""

from __future__ import annotations

from typing import Any

from ctlharness import ControllerHarness

from control.api.crdinstall import serve_installed_crds
from control.errors import NotFound

GW = "gateway.networking.k8s.io"


async def _node(harness: ControllerHarness, name: str, ip: str) -> None:
    node = await harness.client.create("nodes", {"metadata": {"name": name}})
    node["status"] = {"addresses": [{"type": "InternalIP", "address": ip},
                                    {"type": "Hostname", "address": name}]}
    await harness.client.update("nodes", node, subresource="status")


def _conds(obj: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: f"{c['status']}/{c['reason']}" for c in obj.get("conditions") or []}


async def test_classes_gateway_and_ingress_status(harness: ControllerHarness) -> None:
    crds = await serve_installed_crds(harness.client.objects)   # the Gateway API CRDs
    try:
        await _classes_gateway_and_ingress_status(harness)
    finally:
        await crds.stop()


async def _classes_gateway_and_ingress_status(harness: ControllerHarness) -> None:
    c = harness.client
    await _node(harness, "node-2", "172.18.0.3")
    await _node(harness, "node-1", "172.18.0.2")
    await harness.start("gateway")

    async def accepted() -> bool:
        try:
            gc = await c.get("gatewayclasses", "knet")
        except NotFound:
            return False
        return _conds(gc.get("status") or {}).get("Accepted") == "True/Accepted"
    await harness.eventually(accepted, what="GatewayClass knet accepted")
    assert (await c.get("ingressclasses", "knet"))["spec"]["controller"] == \
        "knet.dev/gateway-controller"

    await c.create("gateways", {"apiVersion": f"{GW}/v1", "kind": "Gateway",
                                "metadata": {"name": "web", "namespace": "default"},
                                "spec": {"gatewayClassName": "knet", "listeners": [
                                    {"name": "a", "port": 80, "protocol": "HTTP",
                                     "hostname": "*.example.com"},
                                    {"name": "tls", "port": 443, "protocol": "HTTPS"}]}},
                   namespace="default")
    for name, hosts in (("hit", ["shop.example.com"]), ("miss", ["other.org"])):
        await c.create("httproutes", {
            "apiVersion": f"{GW}/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"parentRefs": [{"name": "web"}], "hostnames": hosts,
                     "rules": [{"backendRefs": [{"name": "x", "port": 80}]}]}},
            namespace="default")
    await c.create("gateways", {"apiVersion": f"{GW}/v1", "kind": "Gateway",
                                "metadata": {"name": "theirs", "namespace": "default"},
                                "spec": {"gatewayClassName": "istio", "listeners": [
                                    {"name": "a", "port": 80, "protocol": "HTTP"}]}},
                   namespace="default")

    async def gateway() -> dict[str, Any] | None:
        gw = await c.get("gateways", "web", namespace="default")
        st = gw.get("status") or {}
        ls = {x["name"]: x for x in st.get("listeners") or []}
        return st if ls.get("a", {}).get("attachedRoutes") == 1 else None
    st = await harness.eventually(gateway, what="the Gateway's status")
    assert st["addresses"] == [{"type": "IPAddress", "value": "172.18.0.2"},
                               {"type": "IPAddress", "value": "172.18.0.3"}]
    assert _conds(st) == {"Accepted": "True/Accepted", "Programmed": "True/Programmed"}
    ls = {x["name"]: x for x in st["listeners"]}
    assert _conds(ls["a"]) == {"Accepted": "True/Accepted", "Programmed": "True/Programmed",
                               "ResolvedRefs": "True/ResolvedRefs"}
    assert ls["a"]["supportedKinds"] == [{"group": GW, "kind": "HTTPRoute"}]
    assert _conds(ls["tls"])["Accepted"] == "False/UnsupportedProtocol"
    assert ls["tls"]["attachedRoutes"] == 0
    await harness.settle()
    assert not (await c.get("gateways", "theirs", namespace="default")).get("status", {}).get(
        "addresses")

    for name, cls in (("mine", "knet"), ("other", "nginx")):
        await c.create("ingresses", {
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"ingressClassName": cls, "defaultBackend": {"service": {
                "name": "x", "port": {"number": 80}}}}}, namespace="default")

    async def ingress() -> list[dict[str, Any]] | None:
        ing = await c.get("ingresses", "mine", namespace="default")
        return ((ing.get("status") or {}).get("loadBalancer") or {}).get("ingress")
    assert await harness.eventually(ingress, what="the Ingress status") == [
        {"ip": "172.18.0.2"}, {"ip": "172.18.0.3"}]
    await harness.settle()
    other = await c.get("ingresses", "other", namespace="default")
    assert not ((other.get("status") or {}).get("loadBalancer") or {}).get("ingress")
