"""The cluster's well-known addresses, defined once (docs/architecture.md, "Addressing").

Both sides read them: the control plane (Service allocation, the `kubernetes` Service, the
API server's certificate) and the node side (dataplane defaults, the pods' resolv.conf, the
DNS image, `knet up`). Change one here and every user of it follows.
"""

from __future__ import annotations

UNDERLAY_CIDR = "172.18.0.0/16"     # the nodes' link, bridge knet0 in the host netns
HOST_IP = "172.18.0.1"              # the host side of the underlay: the API server listens here
API_PORT = 6443
POD_CIDR = "10.244.0.0/16"          # node i gets 10.244.i.0/24
SERVICE_CIDR = "10.96.0.0/12"
KUBERNETES_IP = "10.96.0.1"         # the `kubernetes` Service (default namespace)
CLUSTER_DNS_IP = "10.96.0.10"       # the `kube-dns` Service (kube-system)
CLUSTER_DOMAIN = "cluster.local"
NODE_PORT_RANGE = (30000, 32767)
LB_POOL = "172.18.255.0/24"         # LoadBalancer Services' addresses: in the underlay, no node's
