"""kube-proxy's service health check server: for each LoadBalancer Service with
`externalTrafficPolicy: Local`, an HTTP server on its `healthCheckNodePort` on every node IP.
Any path answers 200 when this node has local ready endpoints for the Service and 503 when
it has none, with kube-proxy's body and headers, so an external load balancer (or `curl`)
sends traffic only to nodes that can serve it without leaving them:

    {"service": {"namespace": "default", "name": "web"}, "localEndpoints": 1,
     "serviceProxyHealthy": true}
    X-Load-Balancing-Endpoint-Weight: 1

`HealthChecks.update({port: (namespace, name, count)})` opens and closes servers (sockets
made in the node's netns by the proxier's SocketMaker); a count change needs no reopening.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping

from aiohttp import web

from knet.proxy.sockets import SocketMaker

log = logging.getLogger(__name__)

__all__ = ["HealthChecks", "body"]

HealthKey = tuple[str, str, int]   # (namespace, name, local endpoints)
PORT = web.AppKey("port", int)


def body(namespace: str, name: str, count: int, healthy: bool = True) -> str:
    return json.dumps({"service": {"namespace": namespace, "name": name},
                       "localEndpoints": count, "serviceProxyHealthy": healthy}, indent=1)


class HealthChecks:
    def __init__(self, sockets: SocketMaker, node_ips: Iterable[str]) -> None:
        self.sockets = sockets
        self.node_ips = tuple(node_ips)
        self.state: dict[int, HealthKey] = {}
        self.runners: dict[int, web.AppRunner] = {}

    def __repr__(self) -> str:
        return f"<HealthChecks ports={sorted(self.runners)}>"

    async def _handle(self, request: web.Request) -> web.Response:
        port = request.app[PORT]
        namespace, name, count = self.state.get(port, ("", "", 0))
        return web.Response(
            status=200 if count else 503, text=body(namespace, name, count),
            content_type="application/json",
            headers={"X-Content-Type-Options": "nosniff",
                     "X-Load-Balancing-Endpoint-Weight": str(count)})

    async def update(self, wanted: Mapping[int, HealthKey]) -> None:
        self.state = dict(wanted)
        for port in sorted(set(self.runners) - set(wanted)):
            await self.runners.pop(port).cleanup()
        for port, (namespace, name, _) in sorted(wanted.items()):
            if port not in self.runners:
                await self._open(port, f"{namespace}/{name}")

    async def _open(self, port: int, service: str) -> None:
        app = web.Application()
        app[PORT] = port
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        try:
            for ip in self.node_ips:
                await web.SockSite(runner, self.sockets.listener(ip, port)).start()
        except OSError as exc:
            log.error("%s: cannot serve healthCheckNodePort %d: %s; load balancers will see "
                      "this node as down until the port is free", service, port,
                      exc.strerror or exc)
            await runner.cleanup()
            return
        self.runners[port] = runner
        log.info("%s: health check on %s:%d", service, ",".join(self.node_ips), port)

    async def stop(self) -> None:
        await self.update({})
