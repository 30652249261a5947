"""Sockets opened in a node's network namespace: how the API server (in the host netns, where
pod addresses are unreachable by design) reaches pods for the proxy subresources, as a real
apiserver reaches them over the node network. Implements control.api.proxysub.PodNetwork."""

from __future__ import annotations

import os
import socket

from knet.dataplane import names, nsutil


class NodeNetnsSockets:
    def socket(self, node: str, family: int, type_: int, proto: int) -> socket.socket:
        """A socket in `node`'s netns; any node's routes reach every pod (host-gw), so a
        pod not yet on a node (or an unknown node) uses the first node netns found."""
        netns = names.node_netns(node) if node else ""
        if not netns or not os.path.exists(nsutil.netns_path(netns)):
            found = sorted(n for n in _listdir(nsutil.NETNS_RUN_DIR)
                           if n.startswith("knet-node-"))
            if not found:
                return socket.socket(family, type_, proto)
            netns = found[0]
        with nsutil.in_netns(netns):
            return socket.socket(family, type_, proto)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []
