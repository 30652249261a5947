"""`python -m knet.dns` as a process: serves a static objects file, exits 0 on SIGTERM; its
query log answers only a client certificate of the cluster CA in group system:masters."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from control.api.ca import ClusterCA, Identity, client_context
from control.api.tls import reader_context

OBJECTS = """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {clusterIP: 10.96.0.20, ports: [{name: http, port: 80}]}
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    objs = tmp_path / "objects.yaml"
    objs.write_text(OBJECTS)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "knet.dns", "--objects", str(objs),
                             "--listen", f"127.0.0.1:{port}", "--log-queries"],
                            stderr=subprocess.PIPE, text=True)
    try:
        out = ""
        for _ in range(50):
            out = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+short", "+time=1",
                                  "+tries=1", "web.default.svc.cluster.local"],
                                 check=False, capture_output=True, text=True, timeout=5).stdout
            if out.strip() and not out.startswith(";;"):
                break
            time.sleep(0.1)
        assert out.split() == ["10.96.0.20"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=5)
    assert proc.returncode == 0, err
    assert "web.default.svc.cluster.local. A -> NOERROR A 10.96.0.20" in err


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        res = subprocess.run([sys.executable, "-m", "knet.dns", "--objects", "/dev/null",
                              "--listen", f"127.0.0.1:{port}"],
                             check=False, capture_output=True, text=True, timeout=20)
    assert res.returncode == 1
    assert "cannot listen" in res.stderr


def _pki(tmp_path: Path) -> tuple[Path, Path]:
    """A cluster CA in tmp_path/state: the DNS pod's Secret files in tmp_path/tls, and the
    state dir (for the knet-flows reader)."""
    from knet.cluster.system import FLOWS_SERVER_NAME

    state = tmp_path / "state"
    ca = ClusterCA.ensure(state)
    ca.ensure_pair("tls", Identity("kube-dns"), server=True, dns=[FLOWS_SERVER_NAME],
                   directory=tmp_path / "tls")
    (tmp_path / "tls" / "ca.crt").write_bytes(ca.cert_pem)
    return tmp_path / "tls", state


def _get(ctx: ssl.SSLContext | None, port: int) -> tuple[int, bytes]:
    """GET /flows over TLS (ctx) or plain HTTP (None): (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        sock = ctx.wrap_socket(raw, server_hostname="kube-dns.kube-system.svc") if ctx else raw
        sock.sendall(b"GET /flows HTTP/1.1\r\nHost: dns\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    if not data:   # TLS 1.3: the server's alert about our certificate can arrive as EOF
        raise ConnectionResetError("closed without an answer")
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_flows_endpoint_shows_queries_only_over_mutual_tls(tmp_path: Path) -> None:
    objs = tmp_path / "objects.yaml"
    objs.write_text(OBJECTS)
    tls_dir, state = _pki(tmp_path)
    port, fport = _free_port(), _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "knet.dns", "--objects", str(objs),
                             "--listen", f"127.0.0.1:{port}", "--flows-tls-dir", str(tls_dir),
                             "--flows-listen", f"127.0.0.1:{fport}"], stderr=subprocess.PIPE)
    try:
        for _ in range(50):
            out = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+short", "+time=1",
                                  "+tries=1", "nope.default.svc.cluster.local"],
                                 check=False, capture_output=True, text=True, timeout=5).stdout
            if not out.startswith(";;"):
                break
            time.sleep(0.1)
        deadline = time.monotonic() + 30   # the query log listens just after DNS (slow
        status, body = 0, b"[]"            # under load: wait for it, not for a count)
        while time.monotonic() < deadline:
            try:
                status, body = _get(reader_context(state), fport)
            except ConnectionRefusedError:
                time.sleep(0.1)
                continue
            if b"nope.default" in body:
                break
            time.sleep(0.1)
        flows = json.loads(body)
        assert status == 200, body
        assert flows[-1]["qname"] == "nope.default.svc.cluster.local."
        assert flows[-1]["rcode"] == "NXDOMAIN" and flows[-1]["client"].startswith("127.0.0.1:")
        # no client certificate (what a pod has), a certificate of another CA, plain HTTP
        anonymous = client_context(state / "ca.crt")
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _get(anonymous, fport)
        other = ClusterCA.ensure(tmp_path / "other")
        crt, key = other.ensure_pair("x", Identity("knet-flows", ("system:masters",)),
                                     client=True)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _get(client_context(state / "ca.crt", crt, key), fport)
        with pytest.raises((ValueError, IndexError, ConnectionError)):
            _get(None, fport)
        # a certificate of the cluster CA outside system:masters: 403
        crt, key = ClusterCA.load(state).ensure_pair("u", Identity("someone"), client=True)
        status, body = _get(client_context(state / "ca.crt", crt, key), fport)
        assert status == 403 and b"qname" not in body
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=5)
    assert proc.returncode == 0


def test_flows_listen_without_tls_refuses_to_start(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "knet.dns", "--objects", "/dev/null",
                          "--listen", f"127.0.0.1:{_free_port()}",
                          "--flows-listen", f"127.0.0.1:{_free_port()}"],
                         check=False, capture_output=True, text=True, timeout=20)
    assert res.returncode == 1 and "--flows-tls-dir" in res.stderr
