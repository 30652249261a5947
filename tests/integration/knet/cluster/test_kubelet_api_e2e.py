"""The kubelet API and the DNS query log on a real cluster answer no one without credentials.

An unprivileged host user (uid 65534, as `setpriv` makes it) against every kubelet port: plain
HTTP, HTTPS without a certificate, HTTPS with a certificate of another CA, a WebSocket exec
and a log read: never a shell and never a log line (401 or a TLS failure). The same exec
and logs through the API server (kubectl) work. A pod cannot read the DNS query log (mutual
TLS) nor reach a kubelet, while `knet flows` still lists DNS queries.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from clusterkit import WEB_DEPLOYMENT, Cluster, client_pod

from control.api.ca import ClusterCA, Identity

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
WS_HEADERS = ["-H", "Connection: Upgrade", "-H", "Upgrade: websocket",
              "-H", "Sec-WebSocket-Version: 13", "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
              "-H", "Sec-WebSocket-Protocol: v5.channel.k8s.io"]


@pytest.fixture(scope="module")
def workload(cluster: Cluster) -> str:
    cluster.kubectl("apply", "-f", "-", input=WEB_DEPLOYMENT + "---" + client_pod())
    cluster.wait("client running", lambda: cluster.get("pod", "client")["status"].get(
        "phase") == "Running")
    return str(cluster.ready_pods("app=web", 3)[0]["metadata"]["name"])


@pytest.fixture(scope="module")
def foreign_cert() -> Iterator[tuple[Path, Path]]:
    """A client certificate claiming the API server's identity, from another CA, in a
    directory uid 65534 can read."""
    d = Path(tempfile.mkdtemp(prefix="knet-foreign-"))
    try:
        os.chmod(d, 0o755)
        ca = ClusterCA.ensure(d)
        crt, key = ca.ensure_pair("x", Identity("kube-apiserver-kubelet-client",
                                                ("system:masters",)), client=True,
                                  directory=d)
        os.chmod(d, 0o755)
        for f in (crt, key):
            os.chmod(f, 0o644)
        yield crt, key
    finally:
        subprocess.run(["rm", "-rf", str(d)], check=False)


def _kubelet_urls(cluster: Cluster) -> list[str]:
    return [n["metadata"]["annotations"]["knet.io/agent-url"]
            for n in cluster.get("nodes")["items"]]


def _as_nobody(*curl: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NOBODY, "curl", "-s", "--max-time", "5", *curl],
                          capture_output=True, text=True, timeout=20, check=False)


def test_kubelet_urls_are_https_on_loopback(cluster: Cluster) -> None:
    urls = _kubelet_urls(cluster)
    assert len(urls) == 2 and all(u.startswith("https://127.0.0.1:") for u in urls), urls


def test_an_unprivileged_host_user_gets_nothing_from_any_kubelet(
        cluster: Cluster, workload: str, foreign_cert: tuple[Path, Path]) -> None:
    exec_path = f"/api/v1/namespaces/default/pods/{workload}/exec?command=id&stdout=true"
    log_path = f"/api/v1/namespaces/default/pods/{workload}/log"
    for base in _kubelet_urls(cluster):     # the pod's own node and the other one
        for path in (exec_path, log_path, "/flows"):
            plain = _as_nobody("-o", "-", "-w", "\n%{http_code}", f"http://127.0.0.1:"
                               f"{base.rsplit(':', 1)[1]}{path}", *WS_HEADERS)
            assert plain.stdout.strip().endswith("000"), plain.stdout
            assert "uid=" not in plain.stdout and "listening" not in plain.stdout
            anon = _as_nobody("-k", "-o", "-", "-w", "\n%{http_code}", base + path, *WS_HEADERS)
            assert anon.stdout.splitlines()[-1] == "401", anon.stdout
            assert anon.stdout.splitlines()[0] == "Unauthorized"
            token = _as_nobody("-k", "-o", "-", "-w", "\n%{http_code}", base + path,
                               "-H", "Authorization: Bearer made-up", *WS_HEADERS)
            assert token.stdout.splitlines()[-1] == "401", token.stdout
            crt, key = foreign_cert
            other = _as_nobody("-k", "--cert", str(crt), "--key", str(key), "-o", "-", "-w",
                               "\n%{http_code}", base + path, *WS_HEADERS)
            assert other.returncode != 0 and "uid=" not in other.stdout, other.stdout
            assert other.stdout.strip().endswith("000"), other.stdout
    # the cluster's keys are not the unprivileged user's to read
    for key in [cluster.state_dir / "ca.key", *sorted((cluster.state_dir / "pki").glob("*.key"))]:
        assert (key.stat().st_mode & 0o777) == 0o600, key
        assert _as_nobody("-o", "/dev/null", f"file://{key}").returncode != 0, key


def test_exec_and_logs_through_the_api_server_still_work(cluster: Cluster, workload: str) -> None:
    assert cluster.exec(workload, "id", "-u").stdout.strip() == "0"
    assert "listening" in cluster.kubectl("logs", workload).stdout


def test_a_pod_cannot_read_the_dns_query_log_nor_reach_a_kubelet(cluster: Cluster,
                                                                 workload: str) -> None:
    dns = cluster.get("pods", "-n", "kube-system", "-l", "k8s-app=kube-dns")["items"][0]
    ip = dns["status"]["podIP"]
    script = (f"curl -s -m 3 http://{ip}:9153/flows; echo plain=$?; "
              f"curl -sk -m 3 https://{ip}:9153/flows; echo tls=$?; "
              "curl -sk -m 3 https://172.18.0.1:10251/flows; echo kubelet=$?")
    out = cluster.exec("client", "sh", "-c", script, check=False).stdout
    assert "qname" not in out and "client_ip" not in out, out
    codes = dict(line.split("=") for line in out.splitlines() if "=" in line and " " not in line)
    assert codes["plain"] != "0" and codes["tls"] != "0" and codes["kubelet"] != "0", out


def test_knet_flows_still_lists_dns_queries(cluster: Cluster, workload: str) -> None:
    cluster.exec("client", "dig", "+short", "kubernetes.default.svc.cluster.local", check=False)

    def listed() -> bool:
        out = cluster.knet("flows", "--protocol", "dns", "--state-dir", str(cluster.state_dir))
        assert "unreachable" not in out.stderr, out.stderr
        return "kubernetes.default.svc.cluster.local. A NOERROR" in out.stdout

    cluster.wait("the DNS query in knet flows", listed, timeout=20, every=1)
