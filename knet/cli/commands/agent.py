"""`knet agent --node NAME`: the node agent (the kubelet), normally started by `knet up`; the
node's kube-proxy is a separate process (`knet proxy`)."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from control.addresses import HOST_IP
from knet.cluster.state import DEFAULT_STATE_DIR
from knet.kubelet.satoken import ApiAccess


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("agent", help="run a node agent (started for you by 'knet up')")
    p.add_argument("--node", required=True, help="node name, e.g. node-1")
    p.add_argument("--index", type=int, required=True,
                   help="node number i: underlay 172.18.0.(i+1), pods 10.244.i.0/24")
    p.add_argument("--kubeconfig", type=Path, required=True)
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    p.add_argument("--port", type=int, default=None, help="agent API port (default 10250+i)")
    p.add_argument("--api-host", default=HOST_IP,
                   help="the API server's address as pods reach it (default 172.18.0.1)")
    p.add_argument("--max-pods", type=int, default=None,
                   help="pods this node accepts (default 250; Kubernetes' default is 110)")
    p.add_argument("--backend", choices=["host-gw", "vxlan"], default="host-gw",
                   help="how pods reach other nodes: host-gw routes (default) or Flannel's "
                   "VXLAN overlay (flannel.1, VNI 1, UDP 8472, pod MTU 1450)")
    p.add_argument("--cni", choices=["builtin", "reference"], default="builtin",
                   help="who wires pods: knet's built-in plugin (default) or the reference "
                   "CNI plugins (bridge, host-local, portmap, loopback)")
    p.set_defaults(func=_run)


def api_access(kubeconfig: Path, api_host: str) -> ApiAccess:
    """The API server as pods reach it: the CA of the agent's kubeconfig and the server at
    the API's underlay address (pods cannot reach the host's loopback). Only that: pods get
    their own ServiceAccount tokens (knet.kubelet.satoken), never the agent's credential."""
    import base64
    from urllib.parse import urlsplit

    import yaml  # type: ignore[import-untyped]

    doc = yaml.safe_load(kubeconfig.read_text())
    cluster = doc["clusters"][0]["cluster"]
    ca = base64.b64decode(cluster.get("certificate-authority-data", "")).decode()
    url = urlsplit(cluster["server"])
    return ApiAccess(f"{url.scheme}://{api_host}:{url.port or 443}", ca)


def _run(args: argparse.Namespace) -> int:
    import uvloop

    return uvloop.run(_main(args))


async def _main(args: argparse.Namespace) -> int:
    from control.client import HttpClient
    from knet.cni.runtime import cni_dataplane
    from knet.dataplane.base import NodeSpec
    from knet.dataplane.netlink import NetlinkDataplane
    from knet.dataplane.overlay import VXLAN_MTU
    from knet.dataplane.vxlan import VxlanOverlay
    from knet.kubelet.agent import Agent
    from knet.runtime.process import ProcessRuntime

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    client = HttpClient.from_kubeconfig(args.kubeconfig)
    vxlan = args.backend == "vxlan"
    spec = NodeSpec.default(args.index, name=args.node, mtu=VXLAN_MTU if vxlan else 1500)
    overlay = VxlanOverlay() if vxlan else None
    agent = Agent(spec=spec, state_dir=args.state_dir, client=client,
                  dataplane=cni_dataplane(NetlinkDataplane(args.state_dir / "dataplane"),
                                          mode=args.cni, node=spec,
                                          state_dir=args.state_dir),
                  overlay=overlay,
                  runtime=ProcessRuntime(), agent_port=args.port,
                  api_access=api_access(args.kubeconfig, args.api_host),
                  **({"max_pods": args.max_pods} if args.max_pods else {}))
    try:
        await agent.run(stop)
    finally:
        await client.close()
    return 0
