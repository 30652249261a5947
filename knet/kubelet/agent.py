"""`knet agent --node NAME`: one process per node. It makes the node's network (dataplane),
registers the Node and keeps its Lease, runs a `PodWorker` per pod bound to it (fed by an
informer on `spec.nodeName=NAME`), removes what no pod owns any more, keeps host-gw routes to
the other nodes, and serves logs/exec on loopback over HTTPS (knet.kubelet.auth checks every
request; the serving certificate is signed by the cluster CA in the state dir, which this agent
shares with the control plane on one host). The node's kube-proxy is a process of its own
(`knet proxy`), as in Kubernetes: when the agent dies, Services and DNS keep working.

Stopping the agent (SIGTERM) leaves the containers running: the next agent adopts them.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import ssl
from pathlib import Path
from typing import Any

from aiohttp import web

from control.api.ca import ClusterCA, Identity, server_context
from control.clientbase import Client
from control.errors import NotFound
from control.informer import Informer
from knet.dataplane.base import Dataplane, NodeSpec
from knet.dataplane.overlay import Overlay
from knet.kubelet import containers as cspec
from knet.kubelet import resourcemetrics
from knet.kubelet.auth import KubeletAuth
from knet.kubelet.context import KubeletOptions, NodeContext
from knet.kubelet.node import DEFAULT_MAX_PODS, NodeAgent, node_object
from knet.kubelet.overlaysync import OverlaySync
from knet.kubelet.pods import PodWorker
from knet.kubelet.satoken import ApiAccess
from knet.kubelet.server import create_app
from knet.runtime.base import PodSandbox, Runtime

log = logging.getLogger(__name__)
Obj = dict[str, Any]
AGENT_PORT_BASE = 10250


class Agent:
    def __init__(self, *, spec: NodeSpec, state_dir: Path, client: Client, dataplane: Dataplane,
                 runtime: Runtime, options: KubeletOptions | None = None,
                 agent_port: int | None = None,
                 api_access: ApiAccess | None = None,
                 max_pods: int = DEFAULT_MAX_PODS, auth: KubeletAuth | None = None,
                 overlay: Overlay | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.state_dir = state_dir
        self.client = client
        self.dataplane = dataplane
        self.runtime = runtime
        self.options = options or KubeletOptions()
        self.port = agent_port if agent_port is not None else AGENT_PORT_BASE + spec.index
        self.api_access = api_access
        self.max_pods = max_pods
        self.auth = auth or KubeletAuth.for_node(client, spec.name)
        self.workers: dict[str, PodWorker] = {}
        self.node_agent: NodeAgent | None = None
        self.overlay = None if overlay is None else OverlaySync(
            overlay=overlay, dataplane=dataplane, report=self._record_event)
        self.pods_root = state_dir / "pods" / spec.name
        self._informers: list[Informer] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self.services = Informer(client, "services")
        self.nodes = Informer(client, "nodes")
        self.pods = Informer(client, "pods", field_selector=f"spec.nodeName={spec.name}")
        from control.clock import RealClock
        from control.controllers.events import EventRecorder

        self.events = EventRecorder(client, component="kubelet", clock=RealClock(),
                                    host=spec.name)

    def __repr__(self) -> str:
        return f"<Agent {self.name} {self.spec.underlay_ip} pods={len(self.workers)}>"

    # -- context for pod workers ---------------------------------------------------------
    async def _lookup(self, resource: str, namespace: str, name: str) -> Obj | None:
        try:
            return await self.client.get(resource, name, namespace=namespace)
        except NotFound:
            return None

    def _service_env(self, namespace: str) -> dict[str, str]:
        return cspec.service_env(self.services.list(), namespace)

    def _event(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        t = asyncio.create_task(self.events.record(obj, type_, reason, message))  # type: ignore[arg-type]
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    def context(self, node_netns: str) -> NodeContext:
        return NodeContext(node_name=self.name, node_netns=node_netns,
                           host_ip=self.spec.underlay_ip, pods_root=self.pods_root,
                           client=self.client, dataplane=self.dataplane, runtime=self.runtime,
                           lookup=self._lookup, service_env=self._service_env, event=self._event,
                           api_access=self.api_access, options=self.options)

    # -- pods ----------------------------------------------------------------------------
    def _on_pod_update(self, _old: Obj, new: Obj) -> None:
        self._on_pod(new)

    def _on_pod(self, pod: Obj) -> None:
        key = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
        w = self.workers.get(key)
        if w is not None and w.uid != pod["metadata"].get("uid"):
            w.gone()  # same name, new pod: the old one goes first
            w = None
        if w is None or w.done:
            w = PodWorker(self.ctx, pod)
            self.workers[key] = w
            w.start()
        else:
            w.update(pod)

    def _on_pod_delete(self, pod: Obj) -> None:
        key = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
        w = self.workers.get(key)
        if w is not None and w.uid == pod["metadata"].get("uid"):
            w.gone()

    async def _reap_workers(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for key, w in list(self.workers.items()):
                if w.done:
                    del self.workers[key]

    async def remove_orphans(self) -> None:
        """Remove sandboxes and pod directories that no pod bound here owns any more."""
        live = {f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in self.pods.list()}
        uids = {p["metadata"].get("uid") for p in self.pods.list()}
        for net in await self.dataplane.list_pods(self.name):
            if net.key not in live:
                log.info("%s: removing orphan sandbox %s", self.name, net.key)
                await self.dataplane.delete_pod(self.name, net.key)
        if self.pods_root.exists():
            for d in self.pods_root.iterdir():
                if d.is_dir() and d.name.rsplit("_", 1)[-1] not in uids:
                    ns, name = (d.name.split("_") + ["", ""])[:2]
                    await self.runtime.remove(PodSandbox.for_pod(
                        ns, name, netns="", pod_ip="0.0.0.0", pod_dir=d))
                    shutil.rmtree(d, ignore_errors=True)

    # -- routes to the other nodes -------------------------------------------------------
    async def _record_event(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        await self.events.record(obj, type_, reason, message)  # type: ignore[arg-type]

    async def _sync_routes(self) -> None:
        if self.overlay is not None:        # --backend vxlan: peers through flannel.1
            await self.overlay.sync(self.nodes.list)
            if self.node_agent is not None:
                self.node_agent.set_network(self.overlay.network())
            return
        peers = []
        for n in self.nodes.list():
            if n["metadata"]["name"] == self.name:
                continue
            ip = next((a["address"] for a in n.get("status", {}).get("addresses") or []
                       if a.get("type") == "InternalIP"), None)
            cidr = n.get("spec", {}).get("podCIDR")
            index = int(n["metadata"].get("annotations", {}).get("knet.io/node-index", 0) or 0)
            if ip and cidr:
                peers.append(NodeSpec(name=n["metadata"]["name"], index=index, underlay_ip=ip,
                                      pod_cidr=cidr))
        await self.dataplane.ensure_node_routes(self.name, peers)

    # -- run -----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        info = await self.dataplane.ensure_node(self.spec)
        self.ctx = self.context(info.netns)
        node = node_object(self.name, underlay_ip=self.spec.underlay_ip,
                           pod_cidr=self.spec.pod_cidr,
                           agent_url=f"https://127.0.0.1:{self.port}", netns=self.spec.netns,
                           max_pods=self.max_pods)
        node["metadata"]["annotations"]["knet.io/node-index"] = str(self.spec.index)
        if self.overlay is not None:
            node["metadata"]["annotations"].update(await self.overlay.start(info))
        # where the local-path provisioner puts this node's volumes (knet down removes it)
        node["metadata"]["annotations"]["knet.io/local-path-root"] = str(
            (self.state_dir / "volumes" / self.name).resolve())
        app = create_app(lambda key: self.workers.get(key), self.runtime, auth=self.auth)
        resourcemetrics.add_routes(app, lambda: self.workers.values(), self.runtime)
        await self._serve(app)
        node_agent = self.node_agent = NodeAgent(self.client, node)
        if self.overlay is not None:
            node_agent.network = self.overlay.network()
        await node_agent.register()
        node_agent.start()
        self.nodes.add_handler(on_add=lambda *_: self._spawn(self._sync_routes()),
                               on_update=lambda *_: self._spawn(self._sync_routes()),
                               on_delete=lambda *_: self._spawn(self._sync_routes()))
        self.pods.add_handler(on_add=self._on_pod, on_update=self._on_pod_update,
                              on_delete=self._on_pod_delete)
        self._informers = [self.services, self.nodes, self.pods]
        for inf in self._informers:
            inf.start()
        await self.pods.wait_synced(timeout=60)
        await self.remove_orphans()
        self._spawn(self._reap_workers())
        log.info("node %s: agent ready (%s, pods %s)", self.name, self.spec.underlay_ip,
                 self.spec.pod_cidr)
        try:
            await stop.wait()
        finally:
            await self.shutdown(node_agent)

    def _spawn(self, coro: Any) -> None:
        t = asyncio.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _serve(self, app: web.Application) -> None:
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port,
                          ssl_context=self._tls()).start()

    def _tls(self) -> ssl.SSLContext:
        """The kubelet's serving certificate (SANs: the addresses it answers on), with client
        certificates verified against the cluster CA (--client-ca-file)."""
        ca = ClusterCA.load(self.state_dir)
        crt, key = ca.ensure_pair(f"kubelet-{self.name}", Identity(
            f"system:node:{self.name}", ("system:nodes",)), server=True,
            ips=["127.0.0.1", self.spec.underlay_ip], dns=[self.name, "localhost"])
        return server_context(crt, key, client_ca=ca.cert_path)

    async def shutdown(self, node_agent: NodeAgent | None = None) -> None:
        for inf in self._informers:
            await inf.stop()
        for w in list(self.workers.values()):
            await w.shutdown()
        if node_agent:
            await node_agent.stop()
        for t in list(self._tasks):
            t.cancel()
        if self._runner:
            await self._runner.cleanup()
        await self.dataplane.close()
