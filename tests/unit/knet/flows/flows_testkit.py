"""A hand-built ClusterView for the flow tools' unit tests: two nodes, a client, two web
backends, a DNS pod, three services."""

from __future__ import annotations

from knet.flows.cluster import ClusterView, NodeView, PodView, ServiceView


def make_view(flows_sockets: tuple[str, str] = ("/nonexistent/1.sock", "/nonexistent/2.sock"),
              dns_ip: str = "10.244.1.2") -> ClusterView:
    nodes = [NodeView("node-1", "knet-node-1", "http://127.0.0.1:10251", "172.18.0.2",
                      "10.244.1.0/24", "10.244.1.1", flows_socket=flows_sockets[0]),
             NodeView("node-2", "knet-node-2", "http://127.0.0.1:10252", "172.18.0.3",
                      "10.244.2.0/24", "10.244.2.1", flows_socket=flows_sockets[1])]
    pods = [PodView("default/client", "10.244.1.3", "node-1", {}, "knet-p-c", "knc", "Running"),
            PodView("default/web-a", "10.244.1.4", "node-1", {"app": "web"}, "knet-p-a", "kna",
                    "Running"),
            PodView("default/web-b", "10.244.2.2", "node-2", {"app": "web"}, "knet-p-b", "knb",
                    "Running"),
            PodView("default/pending", "", "", {}, "", "", "Pending"),
            PodView("kube-system/coredns-x", dns_ip, "node-1", {"k8s-app": "kube-dns"},
                    "knet-p-d", "knd", "Running")]
    services = [ServiceView("default/web", "10.96.0.20", [{"port": 80, "protocol": "TCP",
                                                            "targetPort": 8080}],
                            {"app": "web"}, [("10.244.1.4", "default/web-a", "node-1"),
                                             ("10.244.2.2", "default/web-b", "node-2")]),
                ServiceView("default/empty", "10.96.0.21", [{"port": 80}], {"app": "none"}),
                ServiceView("kube-system/kube-dns", "10.96.0.10",
                            [{"port": 53, "protocol": "UDP"}], {"k8s-app": "kube-dns"},
                            [(dns_ip, "kube-system/coredns-x", "node-1")])]
    return ClusterView(nodes=nodes, pods=pods, services=services)
