"""The system objects `knet up` makes: the DNS pod's query-log certificate reaches that pod
only, as a Secret it mounts, signed by the cluster CA for the name knet flows checks."""

from __future__ import annotations

import base64
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from control.api.ca import ClusterCA, identity_of
from control.api.local import LocalClient
from control.api.objects import ObjectService
from control.store.memory import MemoryStore
from knet.cluster import system
from knet.flows.records import DNS_FLOWS_SERVER_NAME


async def test_dns_query_log_certificate_is_a_secret_the_dns_pod_mounts(tmp_path: Path) -> None:
    ca = ClusterCA.ensure(tmp_path)
    objects = ObjectService(MemoryStore())
    await objects.start()
    client = LocalClient(objects)
    await client.create("namespaces", {"metadata": {"name": "kube-system"}})
    await system.ensure(client, state_dir=tmp_path)
    await system.ensure(client, state_dir=tmp_path)          # idempotent
    secret = await client.get("secrets", system.FLOWS_TLS_SECRET, namespace="kube-system")
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    assert set(data) == {"tls.crt", "tls.key", "ca.crt"} and data["ca.crt"] == ca.cert_pem
    cert = x509.load_pem_x509_certificate(data["tls.crt"])
    assert ca.signed(cert) and identity_of(cert).user == "kube-dns"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert DNS_FLOWS_SERVER_NAME in san.get_values_for_type(x509.DNSName)
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]     # never a client certificate
    pod = (await client.get("deployments", "coredns", namespace="kube-system"))["spec"]["template"]
    vol = pod["spec"]["volumes"][0]
    assert vol["secret"] == {"secretName": system.FLOWS_TLS_SECRET, "defaultMode": 0o400}
    c = pod["spec"]["containers"][0]
    assert c["volumeMounts"][0]["mountPath"] == system.FLOWS_TLS_DIR
    assert c["args"][c["args"].index("--flows-tls-dir") + 1] == system.FLOWS_TLS_DIR
