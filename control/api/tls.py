"""The API server's TLS, signed by the cluster CA (control.api.ca).

kubectl (client-go's clientcmd) only sends a kubeconfig's bearer token over TLS, so the
server speaks HTTPS and the kubeconfig names the cluster CA as its authority
(`certificate-authority-data`): clients verify the server for real, with no "insecure" flag.
DIR/tls.crt is the full chain (serving certificate, then the CA), so a client trusting that
file alone still verifies. At start the control plane also issues what it and knet's host-side
tools present to kubelets and to the DNS query log: the API server's kubelet client
(CN kube-apiserver-kubelet-client, O system:masters, as kubeadm) and `knet-flows`.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from control.api.ca import (
    APISERVER_KUBELET_CLIENT,
    FLOWS_READER,
    SYSTEM_MASTERS,
    ClusterCA,
    Identity,
    client_context,
)
from control.api.ca import server_context as _server_context

__all__ = ["ensure_certificate", "ensure_client_certificates", "kubelet_client_context",
           "reader_context", "server_context"]

APISERVER = Identity("kube-apiserver")
KUBELET_CLIENT = Identity(APISERVER_KUBELET_CLIENT, (SYSTEM_MASTERS,))
# knet's host-side readers (`knet flows`, `knet trace`): root on the host, like the admin
READER = Identity(FLOWS_READER, (SYSTEM_MASTERS,))


def ensure_certificate(state_dir: Path, hosts: list[str]) -> tuple[Path, Path]:
    """DIR/tls.crt (chain) and DIR/tls.key valid for `hosts` (IP addresses) and localhost,
    signed by the cluster CA (made on first use)."""
    ca = ClusterCA.ensure(state_dir)
    return ca.ensure_pair("tls", APISERVER, server=True, ips=hosts, chain=True,
                          dns=["localhost", "kubernetes", "kubernetes.default",
                               "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"],
                          directory=state_dir)


def ensure_client_certificates(state_dir: Path) -> None:
    """The API server's kubelet client and knet's host readers, in DIR/pki."""
    ca = ClusterCA.ensure(state_dir)
    ca.ensure_pair("apiserver-kubelet-client", KUBELET_CLIENT, client=True)
    ca.ensure_pair(FLOWS_READER, READER, client=True)


def kubelet_client_context(state_dir: Path) -> ssl.SSLContext:
    """What the API server uses to reach kubelets: trusts the cluster CA only and presents
    its kubelet client certificate."""
    ca = ClusterCA.load(state_dir)
    crt, key = ca.ensure_pair("apiserver-kubelet-client", KUBELET_CLIENT, client=True)
    return client_context(ca.cert_path, crt, key)


def reader_context(state_dir: Path, *, check_hostname: bool = True) -> ssl.SSLContext:
    """What knet's host-side tools use to read kubelets' and the DNS pod's flow records."""
    ca = ClusterCA.load(state_dir)
    crt, key = ca.ensure_pair(FLOWS_READER, READER, client=True)
    return client_context(ca.cert_path, crt, key, check_hostname=check_hostname)


def server_context(crt: Path, key: Path) -> ssl.SSLContext:
    return _server_context(crt, key)
