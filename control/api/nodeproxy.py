"""pods/log, pods/exec (and attach/portforward) are served by the node agent that runs the
pod, as the kube-apiserver hands them to the kubelet.

`NodeAgents` finds a node's agent URL in the Node object's `knet.io/agent-url` annotation
(written by the agent when it registers). `forward` proxies the request, unchanged in path
and query, to that URL: plain GETs are streamed back chunk by chunk (`logs -f`), WebSocket
upgrades (exec) are relayed frame by frame with the same subprotocol. With no agent URL the
answer is a 503 Status naming the node.

Kubelets speak HTTPS and authenticate every request: `app[KUBELET_TLS]` (set by
control.server) trusts only the cluster CA and presents the API server's kubelet client
certificate (kube-apiserver-kubelet-client, O system:masters), as kube-apiserver's
--kubelet-certificate-authority / --kubelet-client-certificate do.
"""

from __future__ import annotations

import asyncio
import logging
import ssl

import aiohttp
from aiohttp import web

from control.api.objects import ObjectService
from control.errors import ApiError, BadRequest

log = logging.getLogger(__name__)

AGENT_URL_ANNOTATION = "knet.io/agent-url"
KUBELET_TLS = web.AppKey("kubelet_tls", ssl.SSLContext)
_CONNECT_TIMEOUT = 10.0


class ServiceUnavailable(ApiError):
    code, reason = 503, "ServiceUnavailable"


class NodeAgents:
    """Node name -> agent base URL, read from the Node objects."""

    def __init__(self, objects: ObjectService) -> None:
        self.objects = objects

    async def url_for(self, node: str) -> str | None:
        try:
            obj = await self.objects.get("nodes", node)
        except ApiError:
            return None
        annotations = obj["metadata"].get("annotations") or {}
        url = annotations.get(AGENT_URL_ANNOTATION)
        return str(url).rstrip("/") if url else None


async def forward(request: web.Request, objects: ObjectService, namespace: str, name: str,
                  sub: str) -> web.StreamResponse:
    pod = await objects.get("pods", name, namespace=namespace)
    node = (pod.get("spec") or {}).get("nodeName")
    if not node:
        raise BadRequest(f'pod {namespace}/{name}: {sub} is not available: the pod is not '
                         "scheduled to a node yet")
    url = await NodeAgents(objects).url_for(node)
    if url is None:
        raise ServiceUnavailable(f"pod {namespace}/{name}: {sub} needs the agent of node "
                                 f"{node}, which has not registered an address "
                                 f"({AGENT_URL_ANNOTATION}); is 'knet agent --node {node}' "
                                 "running?", name=node, kind="nodes")
    target = url + request.path_qs
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=_CONNECT_TIMEOUT)
    tls = request.app.get(KUBELET_TLS)
    connector = aiohttp.TCPConnector(ssl=tls if tls is not None else True)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await _relay_websocket(request, session, target)
        return await _relay_http(request, session, target)


async def _relay_http(request: web.Request, session: aiohttp.ClientSession,
                      target: str) -> web.StreamResponse:
    body = await request.read() if request.can_read_body else None
    try:
        upstream = await session.request(request.method, target, data=body,
                                         headers={"Content-Type": request.content_type})
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise ServiceUnavailable(f"the node agent at {target} did not answer: {exc}") from None
    async with upstream:
        resp = web.StreamResponse(status=upstream.status)
        resp.content_type = upstream.content_type or "text/plain"
        await resp.prepare(request)
        async for chunk in upstream.content.iter_any():
            await resp.write(chunk)
        await resp.write_eof()
        return resp


async def _relay_websocket(request: web.Request, session: aiohttp.ClientSession,
                           target: str) -> web.StreamResponse:
    protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
                 if p.strip()]
    try:
        upstream = await session.ws_connect(target, protocols=protocols)
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise ServiceUnavailable(f"the node agent at {target} refused the stream: {exc}") from None
    chosen = (upstream.protocol,) if upstream.protocol else ()
    client = web.WebSocketResponse(protocols=chosen)
    await client.prepare(request)

    async def pump(src: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
                   dst: web.WebSocketResponse | aiohttp.ClientWebSocketResponse) -> None:
        async for msg in src:
            if msg.type == aiohttp.WSMsgType.BINARY:
                await dst.send_bytes(msg.data)
            elif msg.type == aiohttp.WSMsgType.TEXT:
                await dst.send_str(msg.data)
            else:
                break
        await dst.close()

    async with upstream:
        tasks = [asyncio.ensure_future(pump(client, upstream)),
                 asyncio.ensure_future(pump(upstream, client))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return client
