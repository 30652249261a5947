"""Mutual TLS, identities and authorization end to end, in the shapes of Istio's task pages
"Mutual TLS Migration" and "Authorization for HTTP traffic" / "TCP traffic", on a real
2-node cluster with real curl from pods.

httpbin (ServiceAccount httpbin) runs on node-2 in the ambient namespace foo; sleep pods run
in foo (node-1: a cross-node hop), bar (ambient, node-2: a same-node hop) and legacy (not
meshed, node-1). Captures on the client pod's eth0 and on node-1's underlay link are grepped
for the request path: absent with mTLS, present with PeerAuthentication DISABLE.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

Cluster = Any

HTTPBIN = "http://httpbin.foo:8000"


def _sleep(ns: str, node: str) -> str:
    return f"""
apiVersion: v1
kind: ServiceAccount
metadata: {{name: sleep, namespace: {ns}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: sleep, namespace: {ns}, labels: {{app: sleep}}}}
spec:
  serviceAccountName: sleep
  nodeName: {node}
  containers:
  - {{name: c, image: busybox, command: ["sleep", "3600"]}}
"""


SETUP = """
apiVersion: v1
kind: Namespace
metadata: {name: foo, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Namespace
metadata: {name: bar, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Namespace
metadata: {name: legacy}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: httpbin, namespace: foo}
---
apiVersion: v1
kind: Pod
metadata: {name: httpbin, namespace: foo, labels: {app: httpbin}}
spec:
  serviceAccountName: httpbin
  nodeName: node-2
  containers:
  - name: web
    image: knet/whoami
    ports: [{containerPort: 80}]
    readinessProbe: {httpGet: {path: /health, port: 80}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: foo}
spec:
  selector: {app: httpbin}
  ports:
  - {name: http, port: 8000, targetPort: 80}
  - {name: tcp, port: 9000, targetPort: 80}
---
""" + "---".join([_sleep("foo", "node-1"), _sleep("bar", "node-2"),
                  _sleep("legacy", "node-1")])


@pytest.fixture(scope="module")
def mesh(cluster: Cluster) -> Cluster:
    for ns in ("foo", "bar", "legacy"):
        cluster.kubectl("create", "namespace", ns, check=False)
    cluster.kubectl("apply", "-f", "-", input=SETUP)
    cluster.wait("pods ready", lambda: _ready(cluster), timeout=120)
    # enrolled: a meshed pod's first requests wait for its certificate and redirect
    cluster.wait("foo/sleep meshed", lambda: _mtls_flow(cluster, "foo"), timeout=60, every=1)
    return cluster


def _ready(c: Cluster) -> bool:
    items = c.get("pods", "-A", "-l", "app in (sleep,httpbin)")["items"]
    ok = [p for p in items if any(x["type"] == "Ready" and x["status"] == "True"
                                  for x in p.get("status", {}).get("conditions") or [])]
    return len(items) == 4 and len(ok) == 4


def curl(c: Cluster, ns: str, url: str, *args: str) -> tuple[int, str]:
    """(curl's exit code, 'STATUS BODY') from ns/sleep."""
    r = c.kubectl("exec", "-n", ns, "sleep", "--", "curl", "-sS", "-m", "5", "-w", "\n%{http_code}", *args, url, check=False, timeout=30)
    lines = r.stdout.rstrip("\n").split("\n")
    return r.returncode, f"{lines[-1]} {' '.join(lines[:-1])[:200]}".strip()


def code(c: Cluster, ns: str, url: str, *args: str) -> str:
    rc, out = curl(c, ns, url, *args)
    return out.split()[0] if rc == 0 else f"exit{rc}"


def flows(c: Cluster, ns: str) -> list[dict[str, Any]]:
    out = c.knet("flows", "--state-dir", str(c.state_dir), "--namespace", ns, "--last", "50",
                 "-o", "json", check=False).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def _mtls_flow(c: Cluster, ns: str) -> bool:
    curl(c, ns, f"{HTTPBIN}/ready")
    return any(f.get("mtls") and f.get("client_pod") == f"{ns}/sleep" for f in flows(c, "foo"))


def apply(c: Cluster, yaml: str) -> None:
    c.kubectl("apply", "-f", "-", input=yaml)


def delete(c: Cluster, kind: str, name: str, ns: str) -> None:
    c.kubectl("delete", kind, name, "-n", ns, "--ignore-not-found")


def capture(c: Cluster, target: list[str], path: Path, run: Any) -> bytes:
    """Capture on target while run() sends traffic; the pcap's bytes."""
    p = subprocess.Popen([sys.executable, "-m", "knet.cli.main", "capture", *target,
                          "--state-dir", str(c.state_dir), "-w", str(path), "--duration", "6",
                          "tcp"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.5)
    try:
        run()
    finally:
        p.wait(timeout=30)
    return path.read_bytes()


def _peer_auth(mode: str, ns: str = "foo", name: str = "default") -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: {name}, namespace: {ns}}}
spec:
  mtls: {{mode: {mode}}}
"""


def test_identities_and_mtls_in_flow_records(mesh: Cluster) -> None:
    assert code(mesh, "foo", f"{HTTPBIN}/get") == "200"
    recs = [f for f in flows(mesh, "foo") if f.get("client_pod") == "foo/sleep"
            and f.get("path") == "/get"]
    assert recs, flows(mesh, "foo")[-3:]
    r = recs[-1]
    assert r["mtls"] is True
    assert r["source_identity"] == "spiffe://cluster.local/ns/foo/sa/sleep"
    assert r["destination_identity"] == "spiffe://cluster.local/ns/foo/sa/httpbin"
    # the server side's record, on node-2, when the connection ends (the L7 path keeps its
    # upstream connections alive, the L4 path has one per client connection): the verified
    # client identity
    assert code(mesh, "foo", "http://httpbin.foo:9000/get") == "200"
    inbound = mesh.wait("the server side's record", lambda: [
        f for f in flows(mesh, "foo") if f.get("port_name") == "hbone"
        and f.get("source_identity") == "spiffe://cluster.local/ns/foo/sa/sleep"], timeout=10)
    assert inbound[-1]["node"] == "node-2" and inbound[-1]["mtls"] is True
    assert inbound[-1]["destination_identity"] == "spiffe://cluster.local/ns/foo/sa/httpbin"
    out = mesh.knet("flows", "--state-dir", str(mesh.state_dir), "--namespace", "foo",
                    "--last", "5").stdout
    assert "mtls" in out and "sa/sleep" in out, out


@pytest.mark.parametrize("where", ["pod", "underlay"])
def test_captures_show_tls_never_the_request_and_plaintext_with_disable(
        mesh: Cluster, tmp_path: Path, where: str) -> None:
    target = ["foo/sleep"] if where == "pod" else ["node-1", "-i", "eth0"]
    marker = f"/anything/secret-{where}-path"
    def traffic() -> None:
        for url in (HTTPBIN, "http://httpbin.foo:9000"):   # L7 (pooled) and L4 paths
            assert [code(mesh, "foo", url + marker) for _ in range(2)] == ["200", "200"]

    pcap = capture(mesh, target, tmp_path / "tls.pcap", traffic)
    assert marker.encode() not in pcap, "the request path crossed the wire in plaintext"
    assert b"\x16\x03\x01" in pcap, "no TLS ClientHello in the capture"
    assert b"\x17\x03\x03" in pcap, "no TLS application data in the capture"
    assert b"spiffe://cluster.local/ns/foo/sa/" not in pcap  # TLS 1.3: certs are encrypted
    apply(mesh, _peer_auth("DISABLE"))
    try:
        time.sleep(2)
        pcap = capture(mesh, target, tmp_path / "plain.pcap", traffic)
        assert marker.encode() in pcap, "DISABLE: the request should be plaintext"
        assert b"\x16\x03\x01" not in pcap
    finally:
        delete(mesh, "peerauthentication", "default", "foo")


def test_strict_refuses_plaintext_from_outside_the_mesh_permissive_accepts(
        mesh: Cluster) -> None:
    assert code(mesh, "legacy", f"{HTTPBIN}/ip") == "200"   # PERMISSIVE by default
    apply(mesh, _peer_auth("STRICT"))
    try:
        mesh.wait("legacy refused", lambda: code(mesh, "legacy", f"{HTTPBIN}/ip")
                  in ("exit56", "exit52", "exit7"), timeout=15, every=0.5)
        assert code(mesh, "foo", f"{HTTPBIN}/ip") == "200"    # meshed, cross-node
        assert code(mesh, "bar", f"{HTTPBIN}/ip") == "200"    # meshed, same node
        rc, _ = curl(mesh, "legacy", "http://httpbin.foo:9000/ip")  # TCP port: reset too
        assert rc != 0
        refused = [f for f in flows(mesh, "foo") if f.get("client_pod") == "legacy/sleep"
                   and f["verdict"] == "REFUSED"]
        assert refused and "STRICT" in refused[-1]["error"]
        # by pod IP, around every Service: the server's own netns refuses it (in-pod capture)
        pod_ip = mesh.get("pod", "-n", "foo", "httpbin")["status"]["podIP"]
        assert code(mesh, "legacy", f"http://{pod_ip}:80/ip").startswith("exit")
        assert any(f.get("port_name") == "inbound" and "STRICT" in f.get("error", "")
                   for f in flows(mesh, "foo"))
        time.sleep(3)   # kubelet probes come from the node: exempt, the pod stays Ready
        assert _ready(mesh)
    finally:
        delete(mesh, "peerauthentication", "default", "foo")
    mesh.wait("legacy back", lambda: code(mesh, "legacy", f"{HTTPBIN}/ip") == "200",
              timeout=15, every=0.5)
    assert code(mesh, "legacy", f"http://{pod_ip}:80/ip") == "200"   # PERMISSIVE: by IP too


def test_pod_ip_traffic_is_mtls_too_and_strict_refuses_plaintext(
        mesh: Cluster, tmp_path: Path) -> None:
    """A meshed pod's TCP straight to a meshed pod's IP (no Service) goes over HBONE in
    mutual TLS like ClusterIP traffic, so STRICT lets it in and still refuses the pod
    outside the mesh; a capture on the client's eth0 never shows the request."""
    pod_ip = mesh.get("pod", "-n", "foo", "httpbin")["status"]["podIP"]
    direct = f"http://{pod_ip}:80"
    apply(mesh, _peer_auth("STRICT"))
    try:
        mesh.wait("legacy refused by IP", lambda: code(mesh, "legacy", f"{direct}/ip")
                  .startswith("exit"), timeout=15, every=0.5)
        assert code(mesh, "foo", f"{direct}/ip") == "200"     # meshed, cross-node
        assert code(mesh, "bar", f"{direct}/ip") == "200"     # meshed, same node
        recs = [f for f in flows(mesh, "foo") if f.get("client_pod") == "foo/sleep"
                and f.get("endpoint_ip") == pod_ip and f.get("service_port") == 80]
        assert recs, flows(mesh, "foo")[-3:]
        assert recs[-1]["mtls"] is True and recs[-1]["verdict"] != "REFUSED"
        assert recs[-1]["source_identity"] == "spiffe://cluster.local/ns/foo/sa/sleep"
        assert recs[-1]["destination_identity"] == "spiffe://cluster.local/ns/foo/sa/httpbin"
        marker = "/anything/secret-pod-ip-path"
        pcap = capture(mesh, ["foo/sleep"], tmp_path / "podip.pcap",
                       lambda: [code(mesh, "foo", direct + marker) for _ in range(2)])
        assert marker.encode() not in pcap, "the request to the pod IP crossed in plaintext"
        assert b"\x16\x03\x01" in pcap, "no TLS ClientHello in the capture"
    finally:
        delete(mesh, "peerauthentication", "default", "foo")


@pytest.mark.parametrize("target", ["svc/httpbin:8000", "pod/httpbin:80"])
def test_trace_shows_the_mesh_hops(mesh: Cluster, target: str) -> None:
    """`knet trace` from a meshed pod: the in-pod outbound 15001, the HBONE connection to the
    endpoint's 15008 on every interface it crosses (cross-node), the server side."""
    r = mesh.knet("trace", "-n", "foo", "sleep", target, "--state-dir", str(mesh.state_dir),
                  check=False)
    out = r.stdout
    assert r.returncode == 0 and "BROKEN" not in out, out + r.stderr
    assert "foo/sleep outbound :15001 (in-pod, node-1's proxy)" in out, out
    assert ("mTLS spiffe://cluster.local/ns/foo/sa/sleep -> "
            "spiffe://cluster.local/ns/foo/sa/httpbin via HBONE :15008") in out, out
    for hop in ("foo/sleep eth0 (HBONE :15008, mTLS)", "node-1 eth0 (underlay) (HBONE :15008",
                "node-2 eth0 (underlay) (HBONE :15008", "foo/httpbin eth0 (backend) (HBONE",
                "foo/httpbin inbound :15008 (node-2's proxy)"):
        assert hop in out, out
    assert ":15008" in out.split("foo/httpbin eth0 (backend)")[1].split("\n")[1], out
    assert "answered by" in out and "(HTTP 200" in out, out


def test_http_authorization_on_the_verified_identity(mesh: Cluster) -> None:
    apply(mesh, """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: httpbin-viewer, namespace: foo}
spec:
  targetRefs: [{kind: Service, group: "", name: httpbin}]
  action: ALLOW
  rules:
  - from: [{source: {principals: ["cluster.local/ns/foo/sa/sleep"]}}]
    to: [{operation: {methods: ["GET"], paths: ["/ip", "/headers*"]}}]
""")
    try:
        mesh.wait("bar denied", lambda: code(mesh, "bar", f"{HTTPBIN}/ip") == "403",
                  timeout=15, every=0.5)
        _, body = curl(mesh, "bar", f"{HTTPBIN}/ip")
        assert body == "403 RBAC: access denied", body
        assert code(mesh, "foo", f"{HTTPBIN}/ip") == "200"
        assert code(mesh, "foo", f"{HTTPBIN}/headers/x") == "200"
        assert code(mesh, "foo", f"{HTTPBIN}/status") == "403"          # path not allowed
        assert code(mesh, "foo", f"{HTTPBIN}/ip", "-X", "DELETE") == "403"
        assert code(mesh, "legacy", f"{HTTPBIN}/ip") == "403"           # no identity
        denied = [f for f in flows(mesh, "foo") if f.get("client_pod") == "bar/sleep"
                  and f.get("status") == 403]
        assert denied and denied[-1]["authz"] == "DENY"
        assert denied[-1]["authz_policy"] == "foo/httpbin-viewer"
        assert denied[-1]["source_identity"] == "spiffe://cluster.local/ns/bar/sa/sleep"
        apply(mesh, """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-delete, namespace: foo}
spec:
  targetRefs: [{kind: Service, group: "", name: httpbin}]
  action: DENY
  rules: [{to: [{operation: {paths: ["/headers/secret"]}}]}]
""")
        mesh.wait("deny wins", lambda: code(mesh, "foo", f"{HTTPBIN}/headers/secret") == "403",
                  timeout=15, every=0.5)
        assert code(mesh, "foo", f"{HTTPBIN}/headers/x") == "200"
    finally:
        delete(mesh, "authorizationpolicy", "httpbin-viewer", "foo")
        delete(mesh, "authorizationpolicy", "deny-delete", "foo")


def test_tcp_authorization_resets_denied_connections(mesh: Cluster) -> None:
    url = "http://httpbin.foo:9000/ip"       # port name tcp: the L4 path
    assert code(mesh, "bar", url) == "200"
    apply(mesh, """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: tcp-policy, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: ALLOW
  rules:
  - from: [{source: {namespaces: ["foo"]}}]
    to: [{operation: {ports: ["80"]}}]
""")
    try:
        mesh.wait("bar reset", lambda: code(mesh, "bar", url).startswith("exit"),
                  timeout=15, every=0.5)
        assert code(mesh, "foo", url) == "200"
        assert code(mesh, "legacy", url).startswith("exit")    # no identity: not in foo
        denied = [f for f in flows(mesh, "foo") if f.get("port_name") == "hbone"
                  and f.get("authz") == "DENY"]
        assert denied and denied[-1]["authz_policy"] == "foo/tcp-policy"
        assert denied[-1]["source_identity"] == "spiffe://cluster.local/ns/bar/sa/sleep"
    finally:
        delete(mesh, "authorizationpolicy", "tcp-policy", "foo")
