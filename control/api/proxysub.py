"""The proxy subresources, as kube-apiserver serves them (and `kubectl proxy` exposes them):

    /api/v1/namespaces/NS/services/[https:]NAME[:PORT]/proxy/PATH  -> a ready endpoint
    /api/v1/namespaces/NS/pods/[https:]NAME[:PORT]/proxy/PATH      -> the pod's IP:PORT
    /api/v1/nodes/NAME/proxy/PATH                                  -> the node's kubelet API

A service's PORT is a port name or number of the Service, mapped to the endpoint's port via
the EndpointSlices; a pod's PORT is a number (80 by default). Pod IPs are often not routed
where the API server runs (knet's host has unreachable routes for them), so the sockets come
from a `PodNetwork` (app[POD_NETWORK]): `knet control` passes one that opens them in the
pod's node network namespace; the default opens them where the API server runs.
"""

from __future__ import annotations

import random
import socket
from typing import Any, Protocol

import aiohttp
from aiohttp import web

from control.api.nodeproxy import KUBELET_TLS, NodeAgents, ServiceUnavailable
from control.api.objects import ObjectService
from control.errors import BadRequest

_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailer", "transfer-encoding", "upgrade", "host", "authorization", "content-length"}


class PodNetwork(Protocol):
    """Makes the (unconnected) sockets that reach pods of `node`."""

    def socket(self, node: str, family: int, type_: int, proto: int) -> socket.socket: ...


class HostNetwork:
    """Pods reachable from where the API server runs (or tests' local servers)."""

    def socket(self, node: str, family: int, type_: int, proto: int) -> socket.socket:
        return socket.socket(family, type_, proto)


POD_NETWORK = web.AppKey("pod_network", PodNetwork)


def split_name(raw: str, what: str) -> tuple[str, str, str]:
    """`name`, `name:port`, `scheme:name:port` -> (scheme, name, port), as kube reads them."""
    parts = raw.split(":")
    if len(parts) == 1:
        return "http", parts[0], ""
    if len(parts) == 2:
        return "http", parts[0], parts[1]
    if len(parts) == 3 and parts[0] in ("http", "https"):
        return parts[0], parts[1], parts[2]
    raise BadRequest(f"invalid {what} request {raw!r}: use NAME, NAME:PORT or "
                     "SCHEME:NAME:PORT (SCHEME http or https)")


async def _service_target(objects: ObjectService, ns: str, raw: str) -> tuple[str, str, int,
                                                                               str]:
    scheme, name, port = split_name(raw, "service")
    svc = await objects.get("services", name, namespace=ns)
    ports = (svc.get("spec") or {}).get("ports") or []
    # kube matches the port by name ("" only matches an unnamed port) or by number
    chosen = next((p for p in ports if port == (p.get("name") or "")
                   or (port and port == str(p.get("port")))), None)
    if chosen is None:
        raise ServiceUnavailable(f'no endpoints available for service "{raw}"')
    port_name = chosen.get("name") or ""
    slices = await objects.list("endpointslices", namespace=ns,
                                label_selector=f"kubernetes.io/service-name={name}")
    candidates = []
    for sl in slices.items:
        eport = next((p.get("port") for p in sl.get("ports") or []
                      if (p.get("name") or "") == port_name), None)
        if eport is None:
            continue
        for ep in sl.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready", True) and ep.get("addresses"):
                candidates.append((ep["addresses"][0], int(eport), ep.get("nodeName") or ""))
    if not candidates:
        raise ServiceUnavailable(f'no endpoints available for service "{raw}"')
    ip, eport, node = random.choice(candidates)
    return scheme, ip, eport, node


async def _pod_target(objects: ObjectService, ns: str, raw: str) -> tuple[str, str, int, str]:
    scheme, name, port = split_name(raw, "pod")
    pod = await objects.get("pods", name, namespace=ns)
    ip = (pod.get("status") or {}).get("podIP")
    if not ip:
        raise BadRequest(f'address not allowed: pod "{name}" has no IP address yet; wait '
                         "until it is Running (kubectl get pod -o wide)")
    try:
        number = int(port) if port else 80
    except ValueError:
        raise BadRequest(f'invalid pod proxy port {port!r} for pod "{name}": use a port '
                         "number") from None
    return scheme, ip, number, (pod.get("spec") or {}).get("nodeName") or ""


async def _relay(request: web.Request, url: str, connector: aiohttp.BaseConnector,
                 what: str) -> web.StreamResponse:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
    body = await request.read() if request.can_read_body else None
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     auto_decompress=False) as session:
        try:
            upstream = await session.request(request.method, url, headers=headers, data=body,
                                             allow_redirects=False)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            cause = getattr(exc, "os_error", None) or exc
            raise ServiceUnavailable(f"error trying to reach {what}: {cause}") from None
        async with upstream:
            resp = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for k, v in upstream.headers.items():
                if k.lower() not in _HOP:
                    resp.headers.add(k, v)
            await resp.prepare(request)
            async for chunk in upstream.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp


def _connector(request: web.Request, node: str, tls: Any) -> aiohttp.TCPConnector:
    network = request.app.get(POD_NETWORK) or HostNetwork()

    def make(addr: Any) -> socket.socket:
        family, type_, proto = addr[0], addr[1], addr[2]
        return network.socket(node, family, type_, proto)
    return aiohttp.TCPConnector(ssl=tls, socket_factory=make)


async def handle(request: web.Request, objects: ObjectService) -> web.StreamResponse:
    info = request.match_info
    path = info.get("path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    query = ("?" + request.query_string) if request.query_string else ""
    kind, raw = info.get("kind", "nodes"), info["name"]
    if kind == "nodes":
        await objects.get("nodes", raw)                  # a NotFound names the node
        url = await NodeAgents(objects).url_for(raw)
        if url is None:
            raise ServiceUnavailable(f"node {raw!r} has no kubelet address "
                                     "(knet.io/agent-url); is its agent running?")
        tls = request.app.get(KUBELET_TLS)
        connector = aiohttp.TCPConnector(ssl=tls if tls is not None else True)
        return await _relay(request, url + path + query, connector, f"node {raw}")
    target = _service_target if kind == "services" else _pod_target
    scheme, ip, port, node = await target(objects, info["namespace"], raw)
    host = f"[{ip}]" if ":" in ip else ip
    # like kube-apiserver, a proxied https backend's certificate is not verified
    connector = _connector(request, node, False if scheme == "https" else None)
    return await _relay(request, f"{scheme}://{host}:{port}{path}{query}", connector,
                        f"{kind[:-1]} {raw}")


def add_routes(app: web.Application, objects_key: Any) -> None:
    """Before the generic REST routes, which take only NAME/SUBRESOURCE."""
    async def handler(request: web.Request) -> web.StreamResponse:
        return await handle(request, request.app[objects_key])

    app.router.add_route(
        "*", "/api/v1/namespaces/{namespace}/{kind:pods|services}/{name}/proxy{path:(/.*)?}",
        handler)
    app.router.add_route("*", "/api/v1/nodes/{name}/proxy{path:(/.*)?}", handler)
