"""The cluster's certificate authority, as kubeadm lays it out: one CA (DIR/ca.crt and
DIR/ca.key, 0600, made once and reused across restarts) that signs every serving and client
certificate of the cluster: the API server's, each kubelet's, the API server's kubelet client
(`kube-apiserver-kubelet-client`, O `system:masters`), the DNS pod's query-log server and
knet's own host-side readers (`knet-flows`).

x509 identities follow Kubernetes: user = subject CN, groups = subject O. Issued pairs live
in DIR/pki/NAME.{crt,key} and are reissued only when they no longer match what is asked
(another CA, another subject or SAN, or less than a day left).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "APISERVER_KUBELET_CLIENT",
    "FLOWS_READER",
    "SYSTEM_MASTERS",
    "CAMissing",
    "ClusterCA",
    "Identity",
    "client_context",
    "peer_identity",
    "server_context",
    "write_private",
]

SYSTEM_MASTERS = "system:masters"
APISERVER_KUBELET_CLIENT = "kube-apiserver-kubelet-client"
FLOWS_READER = "knet-flows"
CA_DAYS = 3650
LEAF_DAYS = 365


class CAMissing(FileNotFoundError):
    """The state dir has no cluster CA (the control plane makes it when it starts)."""


@dataclass(frozen=True)
class Identity:
    """Who a certificate names: user = CN, groups = O (Kubernetes' x509 authenticator)."""
    user: str
    groups: tuple[str, ...] = ()


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` readable by its owner only (0600), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _alt_names(ips: Iterable[str], dns: Iterable[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = [x509.DNSName(d) for d in sorted(set(dns))]
    out += [x509.IPAddress(ipaddress.ip_address(i)) for i in sorted(set(ips))]
    return out


class ClusterCA:
    """The CA's certificate and key; `issue` signs leaf certificates."""

    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey,
                 state_dir: Path) -> None:
        self.cert, self.key, self.state_dir = cert, key, state_dir

    def __repr__(self) -> str:
        return f"<ClusterCA {self.cert.subject.rfc4514_string()} in {self.state_dir}>"

    @property
    def cert_path(self) -> Path:
        return self.state_dir / "ca.crt"

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @staticmethod
    def paths(state_dir: Path) -> tuple[Path, Path]:
        return state_dir / "ca.crt", state_dir / "ca.key"

    @classmethod
    def load(cls, state_dir: Path) -> ClusterCA:
        crt, key = cls.paths(state_dir)
        if not (crt.exists() and key.exists()):
            raise CAMissing(f"cluster CA: {crt} or {key} is missing; the control plane "
                            "('knet control', started by 'knet up') makes it")
        private = serialization.load_pem_private_key(key.read_bytes(), password=None)
        if not isinstance(private, ec.EllipticCurvePrivateKey):
            raise TypeError(f"cluster CA: {key} is not an EC private key; remove {crt} and "
                             f"{key} to make a new CA")
        return cls(x509.load_pem_x509_certificate(crt.read_bytes()), private, state_dir)

    @classmethod
    def ensure(cls, state_dir: Path) -> ClusterCA:
        """The CA of this state dir, made on first use."""
        try:
            return cls.load(state_dir)
        except CAMissing:
            pass
        state_dir.mkdir(parents=True, exist_ok=True)
        private = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "knet-ca")])
        now = _now()
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(private.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(private.public_key()),
                               critical=False)
                .sign(private, hashes.SHA256()))
        crt, key = cls.paths(state_dir)
        write_private(key, _key_pem(private))
        crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(cert, private, state_dir)

    def issue(self, identity: Identity, *, server: bool = False, client: bool = False,
              ips: Iterable[str] = (), dns: Iterable[str] = (),
              days: int = LEAF_DAYS) -> tuple[bytes, bytes]:
        """(certificate PEM, key PEM) for `identity`, for TLS serving and/or client use."""
        if not (server or client):
            raise ValueError(f"certificate for {identity.user}: say server and/or client use")
        private = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in identity.groups]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, identity.user))
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
            [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
        now = _now()
        builder = self.leaf_builder(x509.Name(attrs), private.public_key(),
                                    not_before=now - datetime.timedelta(minutes=5),
                                    not_after=now + datetime.timedelta(days=days),
                                    usages=usages)
        alt = _alt_names(ips, dns)
        if alt:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _key_pem(private)

    def leaf_builder(self, subject: x509.Name, public_key: Any, *,
                     not_before: datetime.datetime, not_after: datetime.datetime,
                     usages: list[x509.ObjectIdentifier]) -> x509.CertificateBuilder:
        """A leaf certificate of this CA (not a CA, digital signature and key encipherment,
        `usages` as extended key usages), ready for SANs and `sign(self.key, SHA256)`."""
        return (x509.CertificateBuilder().subject_name(subject)
                .issuer_name(self.cert.subject).public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(not_before).not_valid_after(not_after)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=True,
                    data_encipherment=False, key_agreement=False, key_cert_sign=False,
                    crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.key.public_key()), critical=False))

    def signed(self, cert: x509.Certificate) -> bool:
        """True if this CA signed `cert`."""
        try:
            cert.verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    def ensure_pair(self, name: str, identity: Identity, *, server: bool = False,
                    client: bool = False, ips: Iterable[str] = (), dns: Iterable[str] = (),
                    chain: bool = False, directory: Path | None = None) -> tuple[Path, Path]:
        """DIR/pki/NAME.crt and .key (0600) for `identity`, reused while they still match.
        chain=True appends the CA certificate after the leaf (a full chain)."""
        folder = directory or self.state_dir / "pki"
        crt, key = folder / f"{name}.crt", folder / f"{name}.key"
        if crt.exists() and key.exists() and self._matches(crt.read_bytes(), identity,
                                                           ips=ips, dns=dns):
            return crt, key
        cert_pem, key_pem = self.issue(identity, server=server, client=client, ips=ips, dns=dns)
        write_private(key, key_pem)
        write_private(crt, cert_pem + (self.cert_pem if chain else b""))
        crt.chmod(0o644)
        return crt, key

    def _matches(self, pem: bytes, identity: Identity, *, ips: Iterable[str],
                 dns: Iterable[str]) -> bool:
        cert = x509.load_pem_x509_certificate(pem)
        if not self.signed(cert) or identity_of(cert) != identity:
            return False
        if cert.not_valid_after_utc < _now() + datetime.timedelta(days=1):
            return False
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            have = ({str(i) for i in san.get_values_for_type(x509.IPAddress)}
                    | set(san.get_values_for_type(x509.DNSName)))
        except x509.ExtensionNotFound:
            have = set()
        return {str(ipaddress.ip_address(i)) for i in ips} | set(dns) <= have


def identity_of(cert: x509.Certificate) -> Identity:
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return Identity(str(cn[0].value) if cn else "", tuple(str(o.value) for o in orgs))


def peer_identity(peercert: Mapping[str, Any] | None) -> Identity | None:
    """The identity in a verified peer certificate as `ssl.SSLSocket.getpeercert()` gives it
    (None or {} when the peer sent none)."""
    if not peercert:
        return None
    cn, orgs = "", []
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                cn = value
            elif key == "organizationName":
                orgs.append(value)
    return Identity(cn, tuple(orgs)) if cn else None


def server_context(crt: Path, key: Path, *, client_ca: Path | None = None,
                   require_client: bool = False) -> ssl.SSLContext:
    """TLS serving context; with client_ca, client certificates are verified against it
    (required when require_client, else optional: a request without one stays anonymous)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(crt), str(key))
    if client_ca is not None:
        ctx.load_verify_locations(cafile=str(client_ca))
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client else ssl.CERT_OPTIONAL
    return ctx


def client_context(ca: Path, crt: Path | None = None, key: Path | None = None, *,
                   check_hostname: bool = True) -> ssl.SSLContext:
    """TLS client context trusting only the cluster CA, presenting crt/key when given."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    ctx.check_hostname = check_hostname
    if crt is not None and key is not None:
        ctx.load_cert_chain(str(crt), str(key))
    return ctx
