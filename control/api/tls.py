"""The API server's TLS: a self-signed certificate for the addresses it serves.

kubectl (client-go's clientcmd) only sends a kubeconfig's bearer token over TLS, so the
server speaks HTTPS and the kubeconfig pins this certificate as its own authority
(`certificate-authority-data`): clients verify the server for real, with no "insecure" flag.
The key and certificate live in the state dir and are reused while they cover the addresses.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["ensure_certificate", "server_context"]

_VALID_DAYS = 3650


def _covers(cert_pem: bytes, hosts: list[str]) -> bool:
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    expires = cert.not_valid_after_utc
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    return all(h in ips for h in hosts) and expires > soon


def ensure_certificate(state_dir: Path, hosts: list[str]) -> tuple[Path, Path]:
    """DIR/tls.crt and DIR/tls.key valid for `hosts` (IP addresses) and localhost."""
    crt, key = state_dir / "tls.crt", state_dir / "tls.key"
    if crt.exists() and key.exists() and _covers(crt.read_bytes(), hosts):
        return crt, key
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "knet-apiserver")])
    now = datetime.datetime.now(datetime.UTC)
    alt: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.DNSName("kubernetes"),
           x509.DNSName("kubernetes.default.svc")]
    alt += [x509.IPAddress(ipaddress.ip_address(h)) for h in sorted(set(hosts))]
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(private.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=_VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(private, hashes.SHA256()))
    key_pem = private.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return crt, key


def server_context(crt: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(crt), str(key))
    return ctx
