"""Workload certificates on the node: one key and SPIFFE certificate per meshed local pod.

Like ztunnel, the node proxy makes each workload's key on the node and asks the cluster CA
to sign a CSR for it (`CertSigner`: `ApiSigner` POSTs a WorkloadCertificateRequest to the
API server as system:kube-proxy, control/api/meshca.py; `LocalSigner` signs with a CA in
hand, for tests), so the CA key never leaves the control plane. A `WorkloadCert` holds the
two TLS contexts (client: present the workload's certificate, verify the peer against the
cluster CA; server: require a client certificate) and is renewed at half its life: the new
chain is loaded into the same `ssl.SSLContext`s, so listeners and pools pick it up on their
next handshake.
"""

from __future__ import annotations

import datetime
import logging
import os
import ssl
import tempfile
from dataclasses import dataclass, field
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from control.clientbase import Client

log = logging.getLogger(__name__)

__all__ = ["ApiSigner", "CertSigner", "LocalSigner", "Signed", "WorkloadCert", "issue",
           "spiffe_of"]

LIFETIME = 24 * 3600


@dataclass(frozen=True, slots=True)
class Signed:
    identity: str          # spiffe://cluster.local/ns/NS/sa/SA
    cert_pem: bytes
    ca_pem: bytes


class CertSigner(Protocol):
    async def sign(self, *, namespace: str, pod: str, csr_pem: bytes,
                   seconds: int) -> Signed: ...


class ApiSigner:
    """Signs through the API server's `workloadcertificaterequests` (the node's identity)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def sign(self, *, namespace: str, pod: str, csr_pem: bytes, seconds: int) -> Signed:
        out = await self.client.create("workloadcertificaterequests", {
            "apiVersion": "mesh.knet.dev/v1", "kind": "WorkloadCertificateRequest",
            "metadata": {"namespace": namespace},
            "spec": {"pod": pod, "request": csr_pem.decode(), "expirationSeconds": seconds}},
            namespace=namespace)
        st = out.get("status") or {}
        return Signed(str(st["identity"]), str(st["certificate"]).encode(),
                      str(st["caCertificate"]).encode())


class LocalSigner:
    """Signs with a CA at hand and a fixed pod -> ServiceAccount map (unit tests, benches)."""

    def __init__(self, ca: object, accounts: dict[str, str] | None = None) -> None:
        self.ca, self.accounts = ca, accounts or {}

    async def sign(self, *, namespace: str, pod: str, csr_pem: bytes, seconds: int) -> Signed:
        from control.api.meshca import sign_workload, spiffe_id

        spiffe = spiffe_id(namespace, self.accounts.get(f"{namespace}/{pod}", "default"))
        cert = sign_workload(self.ca, x509.load_pem_x509_csr(csr_pem),  # type: ignore[arg-type]
                             spiffe, seconds=seconds)
        return Signed(spiffe, cert, self.ca.cert_pem)  # type: ignore[attr-defined]


def spiffe_of(der: bytes | None) -> str | None:
    """The SPIFFE URI SAN of a DER certificate (the verified peer's), or None."""
    if not der:
        return None
    try:
        san = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return None
    uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier)
            if u.startswith("spiffe://")]
    return uris[0] if uris else None


def _contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False          # peers are checked by SPIFFE identity instead
    client.verify_mode = ssl.CERT_REQUIRED
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.verify_mode = ssl.CERT_REQUIRED
    for ctx in (client, server):
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return client, server


@dataclass(slots=True)
class WorkloadCert:
    """A workload's identity on this node, with its TLS contexts."""
    pod: str                   # "ns/name"
    identity: str = ""
    not_before: float = 0.0
    not_after: float = 0.0
    client: ssl.SSLContext = field(default_factory=lambda: _contexts()[0])
    server: ssl.SSLContext = field(default_factory=lambda: _contexts()[1])
    serial: int = 0

    def __repr__(self) -> str:
        return f"<WorkloadCert {self.pod} {self.identity} serial {self.serial:x}>"

    def due(self, now: float) -> bool:
        """Renew at half life (and a cert not issued yet is due)."""
        return not self.identity or now >= self.not_before + (self.not_after -
                                                               self.not_before) / 2

    def load(self, signed: Signed, key_pem: bytes) -> None:
        cert = x509.load_pem_x509_certificate(signed.cert_pem)
        fd, path = tempfile.mkstemp(prefix="knet-mesh-", suffix=".pem")
        try:   # ssl loads chains from files only: a 0600 file, removed at once
            with os.fdopen(fd, "wb") as f:
                f.write(signed.cert_pem + key_pem)
            for ctx in (self.client, self.server):
                ctx.load_cert_chain(path)
                ctx.load_verify_locations(cadata=signed.ca_pem.decode())
        finally:
            os.unlink(path)
        self.identity, self.serial = signed.identity, cert.serial_number
        self.not_before = cert.not_valid_before_utc.timestamp()
        self.not_after = cert.not_valid_after_utc.timestamp()


async def issue(signer: CertSigner, wc: WorkloadCert, *, seconds: int = LIFETIME) -> None:
    """Make a key and a CSR on the node, have it signed, load it into wc's contexts."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .sign(key, hashes.SHA256()))
    ns, _, name = wc.pod.partition("/")
    signed = await signer.sign(namespace=ns, pod=name, seconds=seconds,
                               csr_pem=csr.public_bytes(serialization.Encoding.PEM))
    wc.load(signed, key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    log.info("mesh: %s has identity %s until %s", wc.pod, wc.identity,
             datetime.datetime.fromtimestamp(wc.not_after, datetime.UTC).isoformat())
