"""The system objects every cluster has after `knet up`: the kube-dns Service (10.96.0.10,
53/UDP and 53/TCP), the `coredns` ServiceAccount and the `coredns` Deployment in kube-system
running knet's DNS image as that ServiceAccount (its projected token, through the kubeconfig
the kubelet writes next to it, is the DNS server's only credential).
(The `kubernetes` Service and the namespaces are made by the control plane itself.)

The DNS pod's query log is served over mutual TLS: `ensure` issues its serving certificate
from the cluster CA and hands it, with the CA certificate, to that pod only, as the Secret
kube-system/coredns-flows-tls mounted read-only (0400) at /etc/knet/flows-tls.
"""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path
from typing import Any

from control.addresses import CLUSTER_DNS_IP
from control.api.ca import ClusterCA, Identity
from control.clientbase import Client
from control.errors import AlreadyExists, NotFound
from knet.cluster.state import ClusterRecord
from knet.errors import KnetError

DNS_IP = CLUSTER_DNS_IP
DNS_LABELS = {"k8s-app": "kube-dns"}
FLOWS_TLS_SECRET = "coredns-flows-tls"
FLOWS_TLS_DIR = "/etc/knet/flows-tls"
# the names the query log's certificate answers to (the pod IP is not known in advance)
FLOWS_SERVER_NAME = "kube-dns.kube-system.svc"

KUBE_DNS_SERVICE: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Service",
    "metadata": {"name": "kube-dns", "namespace": "kube-system",
                 "labels": {**DNS_LABELS, "kubernetes.io/name": "CoreDNS"}},
    "spec": {"selector": DNS_LABELS, "clusterIP": DNS_IP, "ports": [
        {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]},
}

COREDNS_ACCOUNT: dict[str, Any] = {
    "apiVersion": "v1", "kind": "ServiceAccount",
    "metadata": {"name": "coredns", "namespace": "kube-system"},
}

COREDNS_DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "coredns", "namespace": "kube-system", "labels": DNS_LABELS},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": DNS_LABELS},
        "template": {
            "metadata": {"labels": DNS_LABELS},
            "spec": {
                "dnsPolicy": "Default",
                "serviceAccountName": "coredns",
                "containers": [{
                    "name": "coredns", "image": "knet/dns",
                    "args": ["--kubeconfig",
                             "/var/run/secrets/kubernetes.io/serviceaccount/kubeconfig",
                             "--listen", "0.0.0.0:53", "--log-queries",
                             "--flows-listen", "0.0.0.0:9153",
                             "--flows-tls-dir", FLOWS_TLS_DIR],
                    "volumeMounts": [{"name": "flows-tls", "mountPath": FLOWS_TLS_DIR,
                                      "readOnly": True}],
                    "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                              {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                              {"name": "flows", "containerPort": 9153, "protocol": "TCP"}],
                    "readinessProbe": {"tcpSocket": {"port": 53}, "periodSeconds": 2},
                }],
                "volumes": [{"name": "flows-tls", "secret": {"secretName": FLOWS_TLS_SECRET,
                                                             "defaultMode": 0o400}}],
            },
        },
    },
}


def flows_tls_secret(state_dir: Path) -> dict[str, Any]:
    """The DNS query log's serving certificate and the CA that signs its clients."""
    ca = ClusterCA.load(state_dir)
    crt, key = ca.ensure_pair("coredns-flows", Identity("kube-dns"), server=True,
                              dns=[FLOWS_SERVER_NAME, FLOWS_SERVER_NAME + ".cluster.local"])
    data = {"tls.crt": crt.read_bytes(), "tls.key": key.read_bytes(), "ca.crt": ca.cert_pem}
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": FLOWS_TLS_SECRET, "namespace": "kube-system",
                         "labels": dict(DNS_LABELS)},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}


async def ensure(client: Client, *, state_dir: Path) -> None:
    """Create the system objects if missing (idempotent); the query log's Secret is
    rewritten so that it always matches the cluster CA of `state_dir`."""
    secret = flows_tls_secret(state_dir)
    try:
        await client.create("secrets", secret, namespace="kube-system")
    except AlreadyExists:
        await client.patch("secrets", FLOWS_TLS_SECRET, {"data": secret["data"]},
                           namespace="kube-system")
    for resource, obj in (("services", KUBE_DNS_SERVICE), ("serviceaccounts", COREDNS_ACCOUNT),
                          ("deployments", COREDNS_DEPLOYMENT)):
        try:
            await client.create(resource, obj, namespace="kube-system")
        except AlreadyExists:
            pass


async def wait_ready(client: Client, rec: ClusterRecord, deadline: float) -> None:
    """Until kube-dns has a ready endpoint."""
    while time.monotonic() < deadline:
        try:
            ep = await client.get("endpoints", "kube-dns", namespace="kube-system")
        except NotFound:  # not made yet
            ep = {}
        if any(s.get("addresses") for s in ep.get("subsets") or []):
            return
        await asyncio.sleep(0.2)
    raise KnetError("kube-dns did not become ready in time; check "
                    f"'knet get pods -n kube-system' and {rec.state_dir / 'logs'}")
