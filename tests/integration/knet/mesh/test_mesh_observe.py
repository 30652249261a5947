"""Seeing the mesh and entering it, on a real 2-node cluster: every node proxy's Prometheus
metrics (curl from the host to NODE_IP:10249) and `knet mesh stat` agree with what a client
pod counted for a known mix of 200s and 500s; a Gateway of class knet and an Ingress of
class knet answer curl from the host side on the address their status names (Gateway API
conformance shapes: simple same-namespace, matching, hostname intersection), and a route to
a missing Service answers 500 with ResolvedRefs False (BackendNotFound)."""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from typing import Any

import pytest

Cluster = Any  # tests/integration/knet/cluster/conftest.py's, through this dir's conftest

NS = "obs"


def echo(name: str, text: str, status: int = 200, app: str = "") -> str:
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {NS}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {app or name}, v: {name}}}}}
  template:
    metadata: {{labels: {{app: {app or name}, v: {name}}}}}
    spec:
      containers:
      - name: echo
        image: hashicorp/http-echo
        args: ["-text={text}", "-listen=:5678", "-status-code={status}"]
        readinessProbe: {{httpGet: {{path: /health, port: 5678}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {NS}}}
spec:
  selector: {{v: {name}}}
  ports: [{{name: http, port: 80, targetPort: 5678}}]
"""


SETUP = f"""
apiVersion: v1
kind: Namespace
metadata:
  name: {NS}
  labels: {{istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: {NS}}}
spec:
  containers:
  - {{name: c, image: busybox, command: ["sleep", "3600"]}}
---
apiVersion: v1
kind: Service
metadata: {{name: mix, namespace: {NS}}}
spec:
  selector: {{app: mix}}
  ports: [{{name: http, port: 80, targetPort: 5678}}]
---
""" + "---".join([echo("good", "good", app="mix"), echo("bad", "bad", 500, app="mix"),
                  echo("v1", "infra-backend-v1"), echo("v2", "infra-backend-v2"),
                  echo("v3", "infra-backend-v3")])


@pytest.fixture(scope="module")
def obs(cluster: Cluster) -> Cluster:
    cluster.kubectl("apply", "-f", "-", input=SETUP)

    def ready() -> bool:
        items = cluster.get("pods", "-n", NS)["items"]
        return len(items) == 6 and all(any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p.get("status", {}).get("conditions") or []) for p in items)
    cluster.wait("obs pods ready", ready, timeout=120)
    return cluster


def codes(c: Cluster, n: int, url: str) -> Counter[str]:
    """n requests from the client pod with curl: how many of each status it saw."""
    script = (f"for i in $(seq {n}); do curl -s -m 5 -o /dev/null -w '=%{{http_code}}\\n' "
              f"{url}; done")
    out = c.kubectl("exec", "-n", NS, "client", "--", "sh", "-c", script, timeout=180).stdout
    return Counter(line[1:] for line in out.splitlines() if line.startswith("="))


def node_ips(c: Cluster) -> list[str]:
    return sorted(a["address"] for n in c.get("nodes")["items"]
                  for a in n["status"]["addresses"] if a["type"] == "InternalIP")


def scrape(ip: str) -> str:
    r = subprocess.run(["curl", "-s", "-m", "5", f"http://{ip}:10249/metrics"],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, f"curl http://{ip}:10249/metrics: rc {r.returncode} {r.stderr}"
    return r.stdout


def requests_by_code(text: str, service: str) -> Counter[str]:
    out: Counter[str] = Counter()
    for m in re.finditer(r'^istio_requests_total\{([^}]*)\} ([0-9.e+]+)$', text, re.MULTILINE):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels.get("destination_service") == service:
            out[labels["response_code"]] += int(float(m.group(2)))
    return out


def test_metrics_and_mesh_stat_agree_with_the_client(obs: Cluster) -> None:
    # the first request may precede enrollment of the brand-new Service: count it anyway
    seen = codes(obs, 40, "http://mix")
    assert sum(seen.values()) == 40 and set(seen) == {"200", "500"}, seen
    fqdn = f"mix.{NS}.svc.cluster.local"

    def metrics_agree() -> Counter[str] | None:
        got: Counter[str] = Counter()
        for ip in node_ips(obs):
            got += requests_by_code(scrape(ip), fqdn)
        return got if got == seen else None
    try:
        obs.wait("metrics == client counts", metrics_agree, timeout=10, every=1)
    except AssertionError:
        raise AssertionError(f"client {seen}; metrics: " + "; ".join(
            f"{ip}: {requests_by_code(scrape(ip), fqdn)}" for ip in node_ips(obs))) from None
    text = "".join(scrape(ip) for ip in node_ips(obs))
    assert re.search(r'istio_request_duration_milliseconds_count\{[^}]*destination_service='
                     rf'"{re.escape(fqdn)}"[^}}]*\}} ', text), text[-2000:]
    assert 'source_workload="client"' in text and 'destination_workload="good"' in text

    out = obs.knet("mesh", "stat", "-n", NS, "svc/mix", "-o", "json", "--state-dir",
                   str(obs.state_dir), "--window", "5m").stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(rows) == 1, out
    row = rows[0]
    assert row["name"] == "mix" and row["requests"] == 40, row
    assert row["success_rate"] == pytest.approx(seen["200"] / 40), (row, seen)
    assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"], row
    table = obs.knet("mesh", "stat", "-n", NS, "deploy", "--state-dir", str(obs.state_dir),
                     "--window", "5m").stdout
    lines = {ln.split()[0]: ln.split() for ln in table.splitlines()[1:]}
    assert lines["good"][1] == "100.00%" and lines["bad"][1] == "0.00%", table


GATEWAY = f"""
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: httproute-hostname-intersection, namespace: {NS}}}
spec:
  gatewayClassName: knet
  listeners:
  - {{name: listener-1, port: 80, protocol: HTTP, hostname: very.specific.com}}
  - {{name: listener-2, port: 80, protocol: HTTP, hostname: "*.wildcard.io"}}
  - {{name: any, port: 8088, protocol: HTTP}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: specific, namespace: {NS}}}
spec:
  parentRefs: [{{name: httproute-hostname-intersection}}]
  hostnames: [non.matching.com, very.specific.com]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /s1}}}}]
    backendRefs: [{{name: v1, port: 80}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: wildcard, namespace: {NS}}}
spec:
  parentRefs: [{{name: httproute-hostname-intersection, sectionName: listener-2}}]
  hostnames: [foo.wildcard.io, "*.bar.wildcard.io"]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /s2}}}}]
    backendRefs: [{{name: v2, port: 80}}]
  - matches: [{{path: {{type: PathPrefix, value: /}}, headers: [{{name: version, value: three}}]}}]
    backendRefs: [{{name: v3, port: 80}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: simple, namespace: {NS}}}
spec:
  parentRefs: [{{name: httproute-hostname-intersection, port: 8088}}]
  rules:
  - backendRefs: [{{name: v1, port: 80}}]
  - matches: [{{path: {{type: Exact, value: /missing}}}}]
    backendRefs: [{{name: no-such-service, port: 80}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: shop, namespace: {NS}}}
spec:
  ingressClassName: knet
  rules:
  - host: shop.example
    http:
      paths:
      - {{path: /api, pathType: Prefix, backend: {{service: {{name: v2, port: {{number: 80}}}}}}}}
      - {{path: /, pathType: Prefix, backend: {{service: {{name: v3, port: {{name: http}}}}}}}}
"""


def host_curl(addr: str, host: str, path: str, *headers: str) -> tuple[str, str]:
    """(status, body) of curl from the host side (the test's own netns)."""
    args = ["curl", "-s", "-m", "5", "-H", f"Host: {host}", "-w", "\n=%{http_code}"]
    for h in headers:
        args += ["-H", h]
    r = subprocess.run([*args, f"http://{addr}{path}"], capture_output=True, text=True,
                       check=False)
    body, _, code = r.stdout.rpartition("\n=")
    return code, body.strip()


def conds(obj: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in obj.get("conditions") or []}


def test_gateway_and_ingress_answer_curl_from_the_host(obs: Cluster) -> None:
    gc = obs.wait("GatewayClass knet accepted", lambda: conds(
        obs.get("gatewayclass", "knet").get("status") or {}).get("Accepted") == "True" and
        obs.get("gatewayclass", "knet"), timeout=30)
    assert gc["spec"]["controllerName"] == "knet.dev/gateway-controller"
    assert obs.get("ingressclass", "knet")["spec"]["controller"]
    obs.kubectl("apply", "-f", "-", input=GATEWAY)

    def programmed() -> dict[str, Any] | None:
        gw = obs.get("gateway", "httproute-hostname-intersection", "-n", NS)
        st = gw.get("status") or {}
        ok = conds(st).get("Programmed") == "True" and st.get("addresses")
        return gw if ok and len(st.get("listeners") or []) == 3 else None
    gw = obs.wait("the Gateway programmed", programmed, timeout=30)
    addrs = [a["value"] for a in gw["status"]["addresses"]]
    assert addrs == node_ips(obs), gw["status"]
    listeners = {ls["name"]: ls for ls in gw["status"]["listeners"]}
    # "specific" names no section: it attaches to listener-1 and to "any" (no hostname)
    assert {n: ls["attachedRoutes"] for n, ls in listeners.items()} == {
        "listener-1": 1, "listener-2": 1, "any": 2}, listeners
    assert all(conds(ls) == {"Accepted": "True", "Programmed": "True", "ResolvedRefs": "True"}
               for ls in listeners.values()), listeners
    addr = addrs[0]
    obs.wait("the gateway answers", lambda: host_curl(addr, "very.specific.com", "/s1")[1]
             == "infra-backend-v1", timeout=30, every=0.5)
    cases = {("very.specific.com", "/s1", ""): ("200", "infra-backend-v1"),
             ("very.specific.com:1234", "/s1", ""): ("200", "infra-backend-v1"),
             ("non.matching.com", "/s1", ""): ("404", None),
             ("foo.wildcard.io", "/s1", ""): ("404", None),
             ("foo.wildcard.io", "/s2", ""): ("200", "infra-backend-v2"),
             ("a.bar.wildcard.io", "/s2/x", ""): ("200", "infra-backend-v2"),
             ("bar.wildcard.io", "/s2", ""): ("404", None),
             ("foo.wildcard.io", "/other", "version: three"): ("200", "infra-backend-v3"),
             ("foo.wildcard.io", "/other", ""): ("404", None),
             ("anything", "/x", ""): ("404", None)}
    for ip in addrs:   # every node serves it
        got = {k: host_curl(ip, k[0], k[1], *([k[2]] if k[2] else [])) for k in cases}
        for k, (code, body) in cases.items():
            assert got[k][0] == code and (body is None or got[k][1] == body), (ip, k, got[k])
    assert host_curl(f"{addr}:8088", "whatever.example", "/any") == ("200", "infra-backend-v1")
    assert host_curl(f"{addr}:8088", "whatever.example", "/missing")[0] == "500"

    def parents(name: str) -> dict[str, str] | None:
        st = obs.get("httproute", name, "-n", NS).get("status") or {}
        mine = [p for p in st.get("parents") or []
                if p.get("controllerName") == "knet.dev/gateway-controller"]
        return {c["type"]: f"{c['status']}/{c['reason']}" for c in mine[0]["conditions"]} \
            if mine else None
    assert obs.wait("route status", lambda: parents("specific"), timeout=20) == {
        "Accepted": "True/Accepted", "ResolvedRefs": "True/ResolvedRefs"}
    assert obs.wait("simple's status", lambda: parents("simple"), timeout=20) == {
        "Accepted": "True/Accepted", "ResolvedRefs": "False/BackendNotFound"}

    ing = obs.wait("the Ingress status", lambda: (obs.get("ingress", "shop", "-n", NS).get(
        "status") or {}).get("loadBalancer", {}).get("ingress"), timeout=30)
    assert [i["ip"] for i in ing] == addrs
    assert host_curl(addr, "shop.example", "/api/items") == ("200", "infra-backend-v2")
    assert host_curl(addr, "shop.example", "/") == ("200", "infra-backend-v3")
    assert host_curl(addr, "other.example", "/api")[0] == "404"
