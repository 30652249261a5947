"""A snapshot of the cluster as the flow tools need it: nodes, pods, services, endpoints,
and where each lives in the kernel (netns, interface), with names for addresses.

`ClusterView.load(state_dir)` reads the API (through the kubeconfig `knet up` wrote) and the
dataplane's record files once; everything after that is pure lookups, so the capture and
trace loops never wait on the network to name a packet. Targets a user types (`pod/NAME`,
`NS/NAME`, `node-1`, `netns:IFACE`, `svc/NAME:PORT`) are resolved here, with errors that
say what exists instead. Each node's kube-proxy serves its flow records over a unix socket
in the state dir (`NodeView.flows_socket`); `proxy_flows` reads them synchronously. `tls` is
how knet's host-side tools reach the DNS pod's flow records (and the kubelets): the cluster CA
and the `knet-flows` client certificate (mutual TLS).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import socket
import ssl
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from control.clientbase import Obj
from knet.errors import KnetError

log = logging.getLogger(__name__)

__all__ = ["ClusterView", "Iface", "NodeView", "PodView", "ServiceView", "TargetError",
           "proxy_flows"]


class TargetError(KnetError):
    """A target the user named does not exist or is ambiguous."""


@dataclass(frozen=True)
class Iface:
    """An interface to capture on: `netns` None is the netns this process runs in."""
    netns: str | None
    name: str
    label: str            # what a person calls it: "pod default/web-1 eth0", "node-1 cni0"

    def __str__(self) -> str:
        return self.label


@dataclass
class NodeView:
    name: str
    netns: str
    agent_url: str
    ip: str
    pod_cidr: str
    gateway: str = ""
    flows_socket: str = ""  # the node's kube-proxy serves GET /flows here (unix socket)

    def __repr__(self) -> str:
        return f"<Node {self.name} {self.ip} {self.pod_cidr}>"


@dataclass
class PodView:
    key: str              # namespace/name
    ip: str
    node: str
    labels: dict[str, str] = field(default_factory=dict)
    netns: str = ""       # from the dataplane record; "" when this node's record is absent
    host_ifname: str = ""
    phase: str = ""

    def __repr__(self) -> str:
        return f"<Pod {self.key} {self.ip} {self.node}>"


@dataclass
class ServiceView:
    key: str
    cluster_ip: str
    ports: list[dict[str, object]]
    selector: dict[str, str]
    endpoints: list[tuple[str, str, str]] = field(default_factory=list)  # (ip, pod key, node)
    port_names: dict[int, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"<Service {self.key} {self.cluster_ip}>"

    def target_port(self, port: int) -> int:
        for p in self.ports:
            if p.get("port") == port:
                tp = p.get("targetPort", port)
                return tp if isinstance(tp, int) else port
        return port


def _split(key: str, default_ns: str) -> str:
    return key if "/" in key else f"{default_ns}/{key}"


class ClusterView:
    def __init__(self, *, nodes: list[NodeView], pods: list[PodView],
                 services: list[ServiceView], tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.nodes = {n.name: n for n in nodes}
        self.pods = {p.key: p for p in pods}
        self.services = {s.key: s for s in services}
        self.names: dict[str, str] = {}
        for n in nodes:
            self.names[n.ip] = n.name
            if n.gateway:
                self.names[n.gateway] = f"{n.name} cni0"
        for p in pods:
            if p.ip:
                self.names[p.ip] = p.key
        for s in services:
            if s.cluster_ip and s.cluster_ip != "None":
                self.names[s.cluster_ip] = f"svc {s.key}"

    def __repr__(self) -> str:
        return f"<ClusterView {len(self.nodes)} nodes {len(self.pods)} pods {len(self.services)} svcs>"

    def name_of(self, ip: str) -> str:
        return self.names.get(ip, "")

    # --- loading ---------------------------------------------------------------------------
    @classmethod
    async def load(cls, state_dir: Path) -> ClusterView:
        from control.client import HttpClient

        kubeconfig = state_dir / "kubeconfig"
        if not kubeconfig.exists():
            raise KnetError(f"no cluster at {state_dir}: {kubeconfig} is missing; run 'knet up' "
                            "(or pass --state-dir)")
        client = HttpClient.from_kubeconfig(kubeconfig)
        try:
            lists = await asyncio.gather(*(client.list(r) for r in
                                           ("nodes", "pods", "services", "endpointslices")))
        except OSError as exc:
            raise KnetError(f"cluster at {state_dir}: API server unreachable ({exc}); is it up? "
                            "('knet status')") from None
        finally:
            await client.close()
        from knet.cluster.state import proxy_socket

        nodes = [_node(o) for o in lists[0].items]
        for n in nodes:
            n.flows_socket = str(proxy_socket(state_dir, n.name))
        pods = [_pod(o) for o in lists[1].items]
        services = [_service(o) for o in lists[2].items]
        _attach_endpoints(services, lists[3].items)
        await _attach_dataplane(state_dir, nodes, pods)
        return cls(nodes=nodes, pods=pods, services=services, tls=_reader_tls(state_dir))

    # --- targets ---------------------------------------------------------------------------
    def pod(self, ref: str, *, namespace: str = "default") -> PodView:
        name = ref.removeprefix("pod/").removeprefix("pods/")
        key = _split(name, namespace)
        pod = self.pods.get(key)
        if pod is None:
            near = [k for k in self.pods if k.split("/")[1].startswith(name.split("/")[-1])]
            hint = f"; did you mean {', '.join(sorted(near)[:3])}?" if near else \
                f"; pods in {key.split('/')[0]}: " + (", ".join(
                    sorted(k.split('/')[1] for k in self.pods if k.startswith(key.split('/')[0]
                                                                             + "/"))[:6]) or "none")
            raise TargetError(f"pod {key} not found{hint}")
        if not pod.netns:
            raise TargetError(f"pod {key}: no network sandbox on {pod.node or 'any node'} yet "
                              f"(phase {pod.phase or 'unknown'}); wait until it runs")
        return pod

    def service(self, ref: str, *, namespace: str = "default") -> ServiceView:
        key = _split(ref.removeprefix("svc/").removeprefix("service/"), namespace)
        svc = self.services.get(key)
        if svc is None:
            have = ", ".join(sorted(self.services)) or "none"
            raise TargetError(f"service {key} not found; services: {have}")
        return svc

    def node(self, name: str) -> NodeView:
        node = self.nodes.get(name.removeprefix("node/"))
        if node is None:
            raise TargetError(f"node {name} not found; nodes: {', '.join(sorted(self.nodes))}")
        return node

    def iface_of(self, target: str, *, iface: str | None = None,
                 namespace: str = "default") -> Iface:
        """TARGET of `knet capture`: a pod (its eth0), a node (cni0 unless `iface`), or
        NETNS:IFACE (any namespace, `host:IFACE` for this one)."""
        if ":" in target and not target.startswith(("pod/", "node/")):
            ns, _, name = target.partition(":")
            if not name:
                raise TargetError(f"capture target {target!r}: give NETNS:IFACE, e.g. "
                                  "knet-node-1:cni0")
            netns = None if ns in ("", "host") else ns
            if netns and not Path(f"/run/netns/{netns}").exists():
                raise TargetError(f"netns {netns} not found (see 'ip netns list')")
            return Iface(netns, name, f"{ns or 'host'} {name}")
        if target.startswith("node/") or target in self.nodes:
            node = self.node(target)
            name = iface or "cni0"
            return Iface(node.netns, name, f"{node.name} {name}")
        pod = self.pod(target, namespace=namespace)
        return Iface(pod.netns, iface or "eth0", f"{pod.key} {iface or 'eth0'}")


def _node(o: Obj) -> NodeView:
    meta, spec = o.get("metadata") or {}, o.get("spec") or {}
    ann = meta.get("annotations") or {}
    addrs = (o.get("status") or {}).get("addresses") or []
    ip = next((a["address"] for a in addrs if a.get("type") == "InternalIP"), "")
    return NodeView(name=meta.get("name", ""), netns=ann.get("knet.io/netns", ""),
                    agent_url=ann.get("knet.io/agent-url", ""), ip=ip,
                    pod_cidr=spec.get("podCIDR", ""))


def _pod(o: Obj) -> PodView:
    meta, spec, status = o.get("metadata") or {}, o.get("spec") or {}, o.get("status") or {}
    return PodView(key=f"{meta.get('namespace', 'default')}/{meta.get('name', '')}",
                   ip=status.get("podIP") or "", node=spec.get("nodeName") or "",
                   labels=meta.get("labels") or {}, phase=status.get("phase") or "")


def _service(o: Obj) -> ServiceView:
    meta, spec = o.get("metadata") or {}, o.get("spec") or {}
    ports = list(spec.get("ports") or [])
    return ServiceView(key=f"{meta.get('namespace', 'default')}/{meta.get('name', '')}",
                       cluster_ip=spec.get("clusterIP") or "", ports=ports,
                       selector=spec.get("selector") or {},
                       port_names={int(p.get("port", 0)): p.get("name", "") for p in ports})


def _attach_endpoints(services: list[ServiceView], slices: list[Obj]) -> None:
    by_key = {s.key: s for s in services}
    for sl in slices:
        meta = sl.get("metadata") or {}
        name = (meta.get("labels") or {}).get("kubernetes.io/service-name")
        svc = by_key.get(f"{meta.get('namespace', 'default')}/{name}")
        if svc is None:
            continue
        for ep in sl.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready") is False:
                continue
            ref = ep.get("targetRef") or {}
            pod = f"{ref.get('namespace', '')}/{ref.get('name', '')}" if ref else ""
            for ip in ep.get("addresses") or []:
                svc.endpoints.append((ip, pod, ep.get("nodeName") or ""))


async def _attach_dataplane(state_dir: Path, nodes: list[NodeView], pods: list[PodView]) -> None:
    """Pod netns and host interface names from the dataplane's records (read-only)."""
    from knet.dataplane.netlink import NetlinkDataplane

    dp = NetlinkDataplane(state_dir / "dataplane")
    try:
        infos = {n.name: n for n in await dp.list_nodes()}
        by_key = {p.key: p for p in pods}
        for node in nodes:
            info = infos.get(node.name)
            if info is None:
                continue
            node.gateway = info.gateway
            node.netns = node.netns or info.netns
            node.ip = node.ip or info.underlay_ip
            for net in await dp.list_pods(node.name):
                pod = by_key.get(net.key)
                if pod is not None and (not pod.node or pod.node == node.name):
                    pod.netns, pod.host_ifname = net.netns, net.host_ifname
                    pod.ip = pod.ip or net.ip
    finally:
        await dp.close()


def _reader_tls(state_dir: Path) -> ssl.SSLContext | None:
    from control.api.ca import CAMissing
    from control.api.tls import reader_context

    try:
        return reader_context(state_dir)
    except (CAMissing, PermissionError) as exc:
        log.warning("cluster at %s: no client certificate for the flow records (%s); "
                    "kubelets and the DNS query log will refuse", state_dir, exc)
        return None


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def proxy_flows(node: NodeView, *, since: float | None = None,
                timeout: float = 2.0) -> list[dict[str, object]]:
    """The flow records of node's kube-proxy (GET /flows on its unix socket), oldest first.
    Raises OSError when the proxy cannot be reached."""
    if not node.flows_socket:
        raise OSError(f"node {node.name}: no kube-proxy flows socket known")
    query = "?" + urllib.parse.urlencode({"since": str(since)}) if since is not None else ""
    conn = _UnixHTTPConnection(node.flows_socket, timeout)
    try:
        conn.request("GET", "/flows" + query)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise OSError(f"node {node.name}: kube-proxy answered {resp.status} "
                          f"{body[:200]!r}")
    finally:
        conn.close()
    rows = json.loads(body)
    return [dict(r) for r in rows]
