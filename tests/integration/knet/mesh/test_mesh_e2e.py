"""The mesh end to end on a real 2-node cluster, driven with the real kubectl, in Istio's
task shapes: traffic shifting 80/20 with an HTTPRoute (GAMMA), header routing with a
VirtualService + DestinationRule subsets, a route timeout on a slow backend, an abort fault
at 50%, and retries that hide an always-500 pod. The namespace is enrolled the ambient way
(`istio.io/dataplane-mode=ambient`); the client is a pod, its requests go through the node
proxy's L7 path, and the flow records say what the mesh decided."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import pytest

Cluster = Any  # tests/integration/knet/cluster/conftest.py's, through this dir's conftest

NS = "mesh"


def echo(name: str, text: str, *, version: str, status: int = 200) -> str:
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {NS}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: reviews, version: {version}}}}}
  template:
    metadata: {{labels: {{app: reviews, version: {version}}}}}
    spec:
      containers:
      - name: echo
        image: hashicorp/http-echo
        args: ["-text={text}", "-listen=:5678", "-status-code={status}"]
        readinessProbe: {{httpGet: {{path: /health, port: 5678}}, periodSeconds: 1}}
"""


def svc(name: str, selector: str) -> str:
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {NS}}}
spec:
  selector: {{{selector}}}
  ports: [{{name: http, port: 80, targetPort: 5678}}]  # meshed: the namespace is ambient
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
apiVersion: apps/v1
kind: Deployment
metadata: {{name: slow, namespace: {NS}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: slow}}}}
  template:
    metadata: {{labels: {{app: slow}}}}
    spec:
      containers:
      - name: netexec
        image: registry.k8s.io/e2e-test-images/agnhost:2.47
        args: ["netexec", "--http-port=5678"]
        readinessProbe: {{httpGet: {{path: /healthz, port: 5678}}, periodSeconds: 1}}
---
""" + "---".join([echo("reviews-v1", "v1", version="v1"),
                  echo("reviews-v2", "v2", version="v2"),
                  echo("reviews-bad", "bad", version="bad", status=500),
                  svc("reviews", "app: reviews"), svc("reviews-v1", "version: v1"),
                  svc("reviews-v2", "version: v2"), svc("slow", "app: slow")])

SUBSETS = f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: {NS}}}
spec:
  host: reviews
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
  - {{name: good, labels: {{app: reviews}}}}
"""


@pytest.fixture(scope="module")
def mesh(cluster: Cluster) -> Cluster:
    cluster.kubectl("apply", "-f", "-", input=SETUP)
    cluster.wait("mesh pods ready", lambda: _all_ready(cluster), timeout=120)
    return cluster


def _all_ready(c: Cluster) -> bool:
    items = c.get("pods", "-n", NS)["items"]
    ready = [p for p in items if any(
        x["type"] == "Ready" and x["status"] == "True"
        for x in p.get("status", {}).get("conditions") or [])]
    return len(items) == 5 and len(ready) == 5


def curl_many(c: Cluster, n: int, url: str, *headers: str) -> list[str]:
    """n requests from the client pod, each on a new connection: the answer's first line,
    or ERR when the status was not 2xx."""
    hdr = " ".join(f"--header='{h}'" for h in headers)
    script = (f"for i in $(seq {n}); do r=$(wget -q -T 5 {hdr} -O- {url} 2>/dev/null "
              "| head -n1); echo \"=${r:-ERR}\"; done")
    out = c.kubectl("exec", "-n", NS, "client", "--", "sh", "-c", script, timeout=120).stdout
    return [line.strip()[1:] for line in out.splitlines() if line.startswith("=")]


def apply(c: Cluster, yaml: str) -> None:
    c.kubectl("apply", "-f", "-", input=yaml)


def wait_answers(c: Cluster, url: str, want: set[str], *headers: str) -> None:
    seen: list[list[str]] = []

    def cond() -> bool:
        seen.append(curl_many(c, 6, url, *headers))
        return set(seen[-1]) == want
    try:
        c.wait(f"{url} answers {want}", cond, timeout=30, every=0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; answers: {seen[-3:]}; flows:\n{_flows(c)}; "
                             f"routes:\n{c.kubectl('get', 'httproutes,vs', '-A', '-o', 'yaml').stdout[-3000:]}") from None


def _flows(c: Cluster) -> str:
    """The last flows of the namespace and the agents' mesh log lines (for a failure)."""
    flows = c.knet("flows", "--state-dir", str(c.state_dir), "--namespace", NS,
                   "--last", "8", "-o", "json", check=False).stdout[-4000:]
    logs = [line for f in sorted((c.state_dir / "logs").glob("*")) if f.is_file()
            for line in f.read_text(errors="replace").splitlines() if "mesh" in line]
    return flows + "\nlogs:\n" + "\n".join(logs[-20:])


def test_traffic_shifting_80_20_with_an_httproute(mesh: Cluster) -> None:
    apply(mesh, f"""
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: reviews, namespace: {NS}}}
spec:
  parentRefs: [{{group: "", kind: Service, name: reviews, port: 80}}]
  rules:
  - backendRefs:
    - {{name: reviews-v1, port: 80, weight: 80}}
    - {{name: reviews-v2, port: 80, weight: 20}}
""")
    wait_answers(mesh, "http://reviews", {"v1", "v2"})
    seen = Counter(curl_many(mesh, 200, "http://reviews"))
    assert set(seen) == {"v1", "v2"}, seen
    assert 140 <= seen["v1"] <= 180, seen  # 160 expected; binomial sd ~5.7
    table = mesh.kubectl("get", "httproutes", "-n", NS).stdout
    assert re.match(r"NAME\s+HOSTNAMES\s+AGE\nreviews\s+\S+", table), table
    mesh.kubectl("delete", "httproute", "reviews", "-n", NS)


def test_header_routing_with_a_virtualservice(mesh: Cluster) -> None:
    apply(mesh, SUBSETS + f"""---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: {NS}}}
spec:
  hosts: [reviews]
  http:
  - match: [{{headers: {{end-user: {{exact: jason}}}}}}]
    route: [{{destination: {{host: reviews, subset: v2}}}}]
  - route: [{{destination: {{host: reviews, subset: v1}}}}]
""")
    wait_answers(mesh, "http://reviews", {"v2"}, "end-user: jason")
    assert set(curl_many(mesh, 10, "http://reviews", "end-user: jason")) == {"v2"}
    assert set(curl_many(mesh, 10, "http://reviews")) == {"v1"}
    out = mesh.kubectl("get", "vs,dr", "-n", NS).stdout
    assert '["reviews"]' in out and re.search(r"destinationrule\S*/reviews\s+reviews\s", out)
    mesh.kubectl("delete", "vs", "reviews", "-n", NS)


def test_a_slow_backend_times_out_with_504(mesh: Cluster) -> None:
    apply(mesh, f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: slow, namespace: {NS}}}
spec:
  hosts: [slow]
  http:
  - route: [{{destination: {{host: slow}}}}]
    timeout: 1s
    retries: {{attempts: 0}}
""")
    url = "'http://slow/shell?cmd=sleep+3'"
    mesh.wait("the timeout", lambda: _status(mesh, url)[0] == "504", timeout=30, every=1)
    status, out = _status(mesh, url)
    assert status == "504" and "upstream request timeout" in out, out
    mesh.kubectl("delete", "vs", "slow", "-n", NS)


def _status(c: Cluster, url: str) -> tuple[str, str]:
    """(status, wget's whole output with the body) of one request from the client pod."""
    out = c.kubectl("exec", "-n", NS, "client", "--", "sh", "-c",
                    f"wget -T 10 -S --content-on-error -O- {url} 2>&1; true").stdout
    m = re.search(r"HTTP/1\.1 (\d+)", out)
    return (m.group(1) if m else "?"), out


def test_abort_fault_at_50_percent(mesh: Cluster) -> None:
    apply(mesh, SUBSETS + f"""---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: {NS}}}
spec:
  hosts: [reviews]
  http:
  - route: [{{destination: {{host: reviews, subset: v1}}}}]
    fault: {{abort: {{httpStatus: 503, percentage: {{value: 50}}}}}}
""")
    mesh.wait("the fault", lambda: "ERR" in curl_many(mesh, 10, "http://reviews"),
              timeout=30, every=0.5)
    answers = curl_many(mesh, 100, "http://reviews")
    assert len(answers) == 100 and set(answers) == {"v1", "ERR"}, Counter(answers)
    assert 30 <= answers.count("v1") <= 70, Counter(answers)
    mesh.kubectl("delete", "vs", "reviews", "-n", NS)


def test_retries_hide_an_always_500_pod(mesh: Cluster) -> None:
    apply(mesh, SUBSETS + f"""---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: {NS}}}
spec:
  hosts: [reviews]
  http:
  - route: [{{destination: {{host: reviews, subset: good}}}}]
    retries: {{attempts: 3, retryOn: 5xx}}
""")
    mesh.wait("the retry route", lambda: "ERR" not in curl_many(mesh, 9, "http://reviews"),
              timeout=30, every=0.5)
    answers = Counter(curl_many(mesh, 60, "http://reviews"))
    assert set(answers) <= {"v1", "v2"} and sum(answers.values()) == 60, answers
    out = mesh.knet("flows", "--state-dir", str(mesh.state_dir), "--service",
                    f"{NS}/reviews", "--protocol", "http", "--last", "60", "-o", "json").stdout
    flows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    retried = [f for f in flows if f.get("retry_reasons")]
    assert retried and all("500 from" in f["retry_reasons"][0] for f in retried), flows[-3:]
    assert {f["route"] for f in flows} == {f"virtualservice {NS}/reviews http[0] match[0]"}
    mesh.kubectl("delete", "vs", "reviews", "-n", NS)
