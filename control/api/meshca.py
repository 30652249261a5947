"""The mesh's certificate authority endpoint: workload certificates for node proxies.

Like ztunnel asking istiod's CA over its node credential, a node proxy (user
`system:kube-proxy`, allowed by RBAC to create `workloadcertificaterequests`) POSTs a
create-only `WorkloadCertificateRequest` (mesh.knet.dev/v1, namespaced, nothing stored)
naming a pod and carrying a PEM CSR made on the node:

    {"spec": {"pod": "sleep-1", "request": "-----BEGIN CERTIFICATE REQUEST-----...",
              "expirationSeconds": 86400}}

The answer's status holds a certificate for `spiffe://cluster.local/ns/NS/sa/SA` (URI SAN,
the pod's ServiceAccount as the API says, whatever the CSR asks), client and server use,
signed by the cluster CA, and the CA's certificate. Key design choice: the CA key stays in
the control plane and the workload keys stay on the node (only the CSR travels).
"""

from __future__ import annotations

import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from control.api.ca import ClusterCA
from control.api.reviews import ReviewContext, ReviewHandler
from control.errors import BadRequest, Cause, Invalid

__all__ = ["DEFAULT_SECONDS", "MIN_SECONDS", "spiffe_id", "workload_certificates"]

Obj = dict[str, Any]
DEFAULT_SECONDS = 24 * 3600
MIN_SECONDS = 600
MAX_SECONDS = 7 * 24 * 3600
TRUST_DOMAIN = "cluster.local"


def spiffe_id(namespace: str, account: str) -> str:
    return f"spiffe://{TRUST_DOMAIN}/ns/{namespace}/sa/{account}"


def _invalid(field: str, value: object, why: str) -> Invalid:
    detail = f"Invalid value: {value!r}: {why}"
    return Invalid(f'WorkloadCertificateRequest.mesh.knet.dev is invalid: {field}: {detail}',
                   kind="WorkloadCertificateRequest", group="mesh.knet.dev",
                   causes=[Cause(field, detail)])


def sign_workload(ca: ClusterCA, csr: x509.CertificateSigningRequest, spiffe: str, *,
                  seconds: int, now: datetime.datetime | None = None) -> bytes:
    """A leaf for `spiffe` over the CSR's public key (PEM)."""
    now = now or datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, TRUST_DOMAIN)])
    cert = (ca.leaf_builder(subject, csr.public_key(),
                            not_before=now - datetime.timedelta(minutes=1),
                            not_after=now + datetime.timedelta(seconds=seconds),
                            usages=[ExtendedKeyUsageOID.SERVER_AUTH,
                                    ExtendedKeyUsageOID.CLIENT_AUTH])
            .add_extension(x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(spiffe)]), critical=True)
            .sign(ca.key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def workload_certificates(ca: ClusterCA) -> ReviewHandler:
    """The review handler for `workloadcertificaterequests` (Settings.reviews)."""

    async def handle(ctx: ReviewContext, body: Obj) -> Obj:
        raw = body.get("spec")
        spec: Obj = raw if isinstance(raw, dict) else {}
        pod_name, pem = spec.get("pod"), spec.get("request")
        if not isinstance(pod_name, str) or not pod_name:
            raise _invalid("spec.pod", pod_name, "the pod the certificate is for is required")
        if not isinstance(pem, str) or not pem:
            raise _invalid("spec.request", "", "a PEM certificate signing request is required")
        seconds = spec.get("expirationSeconds", DEFAULT_SECONDS)
        if not isinstance(seconds, int) or isinstance(seconds, bool) \
                or not MIN_SECONDS <= seconds <= MAX_SECONDS:
            raise _invalid("spec.expirationSeconds", seconds,
                           f"must be an integer from {MIN_SECONDS} to {MAX_SECONDS}")
        try:
            csr = x509.load_pem_x509_csr(pem.encode())
        except ValueError as exc:
            raise _invalid("spec.request", "<PEM>", f"not a PEM CSR: {exc}") from None
        if not csr.is_signature_valid:
            raise _invalid("spec.request", "<PEM>", "the CSR's signature does not verify")
        namespace = ctx.namespace or "default"
        pod = await ctx.objects.get("pods", pod_name, namespace=namespace)
        if (pod.get("spec") or {}).get("hostNetwork"):
            raise BadRequest(f"pod {namespace}/{pod_name} uses the host network: it is not "
                             "a mesh workload and gets no workload certificate")
        account = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        spiffe = spiffe_id(namespace, account)
        cert = sign_workload(ca, csr, spiffe, seconds=seconds)
        return {"identity": spiffe, "certificate": cert.decode(),
                "caCertificate": ca.cert_pem.decode()}

    return handle
