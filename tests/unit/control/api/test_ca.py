"""The cluster CA: made once per state dir (key 0600) and reused; the certificates it signs
carry the identities Kubernetes reads (CN = user, O = groups) and verify in real TLS
handshakes: the API server's for its addresses, clients only with a client certificate."""

from __future__ import annotations

import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509

from control.api.ca import (
    CAMissing,
    ClusterCA,
    Identity,
    client_context,
    identity_of,
    peer_identity,
    server_context,
)
from control.api.tls import ensure_certificate, ensure_client_certificates, kubelet_client_context


def test_ca_is_made_once_private_and_reused(tmp_path: Path) -> None:
    ca = ClusterCA.ensure(tmp_path)
    key = tmp_path / "ca.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    before = key.read_bytes(), (tmp_path / "ca.crt").read_bytes()
    again = ClusterCA.ensure(tmp_path)
    assert (key.read_bytes(), (tmp_path / "ca.crt").read_bytes()) == before
    assert again.cert == ca.cert
    assert ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_load_without_a_ca_names_the_way_out(tmp_path: Path) -> None:
    with pytest.raises(CAMissing, match="knet up"):
        ClusterCA.load(tmp_path)


def test_issued_pairs_are_reused_until_the_request_changes(tmp_path: Path) -> None:
    ca = ClusterCA.ensure(tmp_path)
    who = Identity("system:node:node-1", ("system:nodes",))
    crt, key = ca.ensure_pair("kubelet", who, server=True, ips=["127.0.0.1"])
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    first = crt.read_bytes()
    assert ca.ensure_pair("kubelet", who, server=True, ips=["127.0.0.1"])[0].read_bytes() == first
    ca.ensure_pair("kubelet", who, server=True, ips=["127.0.0.1", "172.18.0.2"])
    assert crt.read_bytes() != first                       # a new SAN: reissued
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    assert identity_of(cert) == who and ca.signed(cert)


def test_a_new_ca_reissues_the_api_server_certificate(tmp_path: Path) -> None:
    crt, _ = ensure_certificate(tmp_path, ["127.0.0.1"])
    old = crt.read_bytes()
    (tmp_path / "ca.crt").unlink()
    (tmp_path / "ca.key").unlink()
    crt, _ = ensure_certificate(tmp_path, ["127.0.0.1"])
    leaf = x509.load_pem_x509_certificate(crt.read_bytes())
    assert crt.read_bytes() != old and ClusterCA.load(tmp_path).signed(leaf)


def test_kubelet_client_identity_is_kubeadms(tmp_path: Path) -> None:
    ensure_client_certificates(tmp_path)
    cert = x509.load_pem_x509_certificate(
        (tmp_path / "pki" / "apiserver-kubelet-client.crt").read_bytes())
    assert identity_of(cert) == Identity("kube-apiserver-kubelet-client", ("system:masters",))
    assert kubelet_client_context(tmp_path).verify_mode == ssl.CERT_REQUIRED


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext,
               name: str = "127.0.0.1") -> object:
    """One real TLS exchange over loopback; the server's view of the client certificate."""
    seen: list[object] = []
    with socket.create_server(("127.0.0.1", 0)) as lsock:
        def serve() -> None:
            conn, _ = lsock.accept()
            try:
                with server.wrap_socket(conn, server_side=True) as s:
                    seen.append(peer_identity(s.getpeercert()))
                    s.sendall(b"ok")
            except (ssl.SSLError, OSError) as exc:
                seen.append(exc)

        t = threading.Thread(target=serve)
        t.start()
        try:
            with socket.create_connection(lsock.getsockname(), timeout=5) as raw, \
                    client.wrap_socket(raw, server_hostname=name) as c:
                data = c.recv(2)
                if data != b"ok":
                    raise ConnectionResetError("closed by the server")
        finally:
            t.join(5)
    return seen[0]


def test_api_server_chain_verifies_with_the_ca_and_the_chain_file(tmp_path: Path) -> None:
    crt, key = ensure_certificate(tmp_path, ["127.0.0.1"])
    srv = server_context(crt, key)
    assert _handshake(srv, client_context(tmp_path / "ca.crt")) is None
    assert _handshake(srv, client_context(crt)) is None      # tls.crt holds the CA too
    with pytest.raises(ssl.SSLCertVerificationError):        # not a SAN of it
        _handshake(srv, client_context(tmp_path / "ca.crt"), name="10.1.2.3")


def test_client_certificates_of_the_ca_only(tmp_path: Path) -> None:
    ca = ClusterCA.ensure(tmp_path / "a")
    crt, key = ca.ensure_pair("srv", Identity("kubelet"), server=True, ips=["127.0.0.1"])
    srv = server_context(crt, key, client_ca=ca.cert_path)       # optional client certs
    admin = ca.ensure_pair("admin", Identity("kube-apiserver-kubelet-client",
                                             ("system:masters",)), client=True)
    seen = _handshake(srv, client_context(ca.cert_path, *admin))
    assert seen == Identity("kube-apiserver-kubelet-client", ("system:masters",))
    assert _handshake(srv, client_context(ca.cert_path)) is None  # anonymous, for a 401
    other = ClusterCA.ensure(tmp_path / "b").ensure_pair("x", Identity("x", ("system:masters",)),
                                                        client=True)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _handshake(srv, client_context(ca.cert_path, *other))
    # a serving-only certificate of the same CA is no client certificate
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _handshake(srv, client_context(ca.cert_path, crt, key))
