"""Ingress, IngressClass, NetworkPolicy and PodDisruptionBudget stored and served as on a
cluster: discovery (every served group listed in /apis, upstream short names), OpenAPI
entries kubectl apply needs, defaults, kube-apiserver's validation messages, printer
columns."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from control.api.app import Settings, create_app
from control.models.meshkinds import MESH_RESOURCES
from control.models.resources import RESOURCES
from control.store.memory import MemoryStore

TOKEN = "s3cret"
NET = "/apis/networking.k8s.io/v1/namespaces/default"
TABLE = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}


@pytest.fixture
async def api() -> AsyncIterator[TestClient]:
    app = create_app(MemoryStore(), Settings(token=TOKEN))
    async with TestClient(TestServer(app), headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        assert (await c.post("/api/v1/namespaces",
                             json={"metadata": {"name": "default"}})).status == 201
        yield c


def netpol(name: str, peer: dict) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                     "ingress": [{"from": [peer], "ports": [{"port": 80}]}]}}


async def test_discovery_lists_every_served_group(api: TestClient) -> None:
    groups = {g["name"] for g in (await (await api.get("/apis")).json())["groups"]}
    # the built-in groups, metrics.k8s.io and those of the CRDs installed at start (Gateway
    # API, Istio)
    assert groups == {r.group for r in (*RESOURCES, *MESH_RESOURCES) if r.group} | {
        "metrics.k8s.io"}
    assert {"networking.k8s.io", "policy", "authentication.k8s.io"} <= groups
    net = {r["name"]: r for r in (await (await api.get(
        "/apis/networking.k8s.io/v1")).json())["resources"]}
    assert net["ingresses"]["shortNames"] == ["ing"] and "ingresses/status" in net
    assert net["networkpolicies"]["shortNames"] == ["netpol"]
    assert net["ingressclasses"]["namespaced"] is False
    policy = {r["name"]: r for r in (await (await api.get(
        "/apis/policy/v1")).json())["resources"]}
    assert policy["poddisruptionbudgets"]["shortNames"] == ["pdb"]
    root = await (await api.get("/openapi/v3")).json()
    doc = await (await api.get(root["paths"]["apis/policy/v1"]["serverRelativeURL"])).json()
    op = doc["paths"]["/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets/{name}"]
    assert op["patch"]["x-kubernetes-group-version-kind"]["kind"] == "PodDisruptionBudget"


async def test_networkpolicy_defaults_validation_and_columns(api: TestClient) -> None:
    r = await api.post(f"{NET}/networkpolicies", json=netpol("np", {"ipBlock": {
        "cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}))
    made = await r.json()
    assert r.status == 201 and made["spec"]["policyTypes"] == ["Ingress"]
    assert "does not enforce" not in r.headers.get("Warning", "")   # knet/policy enforces them
    assert made["spec"]["ingress"][0]["ports"] == [{"port": 80, "protocol": "TCP"}]
    r = await api.post(f"{NET}/networkpolicies", json=netpol("bad", {"ipBlock": {
        "cidr": "10.0.0.0/33"}}))
    assert r.status == 422 and (await r.json())["message"] == (
        'NetworkPolicy.networking.k8s.io "bad" is invalid: '
        'spec.ingress[0].from[0].ipBlock.cidr: Invalid value: "10.0.0.0/33": must be a valid '
        "CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")
    r = await api.post(f"{NET}/networkpolicies", json=netpol("out", {"ipBlock": {
        "cidr": "10.0.0.0/24", "except": ["192.168.0.0/24", "10.0.0.0/24"]}}))
    causes = (await r.json())["details"]["causes"]
    assert [(c["field"], c["message"]) for c in causes] == [
        ("spec.ingress[0].from[0].ipBlock.except[0]",
         'Invalid value: "192.168.0.0/24": must be a strict subset of `cidr`'),
        ("spec.ingress[0].from[0].ipBlock.except[1]",
         'Invalid value: "10.0.0.0/24": must be a strict subset of `cidr`')]
    r = await api.post(f"{NET}/networkpolicies", json=netpol("both", {
        "ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}))
    assert "may not specify both ipBlock and another peer" in (await r.json())["message"]
    table = await (await api.get(f"{NET}/networkpolicies", headers=TABLE)).json()
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Pod-Selector", "Age"]
    assert table["rows"][0]["cells"][:2] == ["np", "app=web"]


async def test_ingress_and_pdb(api: TestClient) -> None:
    backend = {"service": {"name": "web", "port": {"number": 80}}}
    ing = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i"},
           "spec": {"ingressClassName": "nginx", "rules": [{"host": "a.example", "http": {
               "paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}]}}
    r = await api.post(f"{NET}/ingresses", json=ing)
    assert r.status == 201 and (await r.json())["status"] == {"loadBalancer": {}}
    del ing["spec"]["rules"][0]["http"]["paths"][0]["pathType"]
    ing["metadata"]["name"] = "j"
    r = await api.post(f"{NET}/ingresses", json=ing)
    assert "spec.rules[0].http.paths[0].pathType: Required value: pathType must be " \
        "specified" in (await r.json())["message"]
    table = await (await api.get(f"{NET}/ingresses", headers=TABLE)).json()
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name", "Class", "Hosts", "Address", "Ports", "Age"]
    assert table["rows"][0]["cells"][:5] == ["i", "nginx", "a.example", "", "80"]
    pdbs = "/apis/policy/v1/namespaces/default/poddisruptionbudgets"
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "p"},
           "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}}
    made = await (await api.post(pdbs, json=pdb)).json()
    assert made["status"]["disruptionsAllowed"] == 0
    pdb["metadata"]["name"], pdb["spec"]["maxUnavailable"] = "q", "10%"
    r = await api.post(pdbs, json=pdb)
    assert r.status == 422 and "minAvailable and maxUnavailable cannot be both set" in \
        (await r.json())["message"]
    table = await (await api.get(pdbs, headers=TABLE)).json()
    assert table["rows"][0]["cells"][:4] == ["p", "1", "N/A", 0]
    r = await api.post("/apis/networking.k8s.io/v1/ingressclasses", json={
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": "nginx"}, "spec": {}})
    assert r.status == 422 and "spec.controller: Required value" in (await r.json())["message"]
