"""The kubelet API (HTTPS on loopback): pod logs and exec, served under the same paths as the
API server's `pods/log` and `pods/exec`, so the API server proxies them verbatim; plus
`/flows` from the node's proxy when it runs here. Every request, whatever route, passes
knet.kubelet.auth first (client certificate or token, then authorization): nothing that runs
a command or reads a log answers an anonymous caller.

exec speaks the Kubernetes WebSocket stream protocols (knet.kubelet.channels: `v5`, `v4`,
base64; binary frames from kubectl, text frames from the Python client): each frame starts
with a channel (0 stdin, 1 stdout, 2 stderr, 3 status, 4 resize, 255 close); the final Status
goes on channel 3. attach is knet.kubelet.attach;
portforward is knet.kubelet.portforward (SPDY for kubectl, channel pairs for
the Python client).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from knet.kubelet import attach, channels, logopts, portforward
from knet.kubelet.auth import KubeletAuth, middleware
from knet.kubelet.pods import PodWorker

log = logging.getLogger(__name__)
PODS = "/api/v1/namespaces/{namespace}/pods/{name}"


def _status(message: str, code: int, reason: str) -> web.Response:
    return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                              "message": message, "reason": reason, "code": code}, status=code)


def _invalid(exc: logopts.InvalidLogOptions, pod: str) -> web.Response:
    causes = [{"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in exc.causes]
    return web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {},
                              "status": "Failure", "message": str(exc), "reason": "Invalid",
                              "details": {"name": pod, "kind": "PodLogOptions",
                                          "causes": causes}, "code": 422}, status=422)


def _pod_netns(sandbox: Any) -> portforward.Dial:
    return portforward.netns_dialer(sandbox.netns, sandbox.netns)


def create_app(workers: Callable[[str], PodWorker | None], runtime: Any, *,
               auth: KubeletAuth,
               dialer: Callable[[Any], portforward.Dial] = _pod_netns) -> web.Application:
    """`dialer(sandbox)` connects to a port of the pod (portforward): by default inside its
    netns, as the kubelet does through the CRI."""
    app = web.Application(middlewares=[middleware(auth)])

    def find(request: web.Request) -> tuple[PodWorker, Any]:
        key = f"{request.match_info['namespace']}/{request.match_info['name']}"
        w = workers(key)
        if w is None or w.sandbox is None:
            raise web.HTTPNotFound(text=json.dumps({
                "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                "reason": "NotFound", "message": f'pod "{key}" is not running on this node'}),
                content_type="application/json")
        # like the kubelet: no container named means the pod's first container
        want = request.query.get("container") or w.pod["spec"]["containers"][0]["name"]
        names = [r.c["name"] for r in w.runners]          # ephemeral ones included
        runner = next((r for r in w.runners if r.c["name"] == want), None)
        if runner is None:
            raise web.HTTPBadRequest(text=json.dumps({
                "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 400,
                "reason": "BadRequest",
                "message": f"container {want} is not valid for pod {key}; running: {names}"}),
                content_type="application/json")
        return w, runner

    async def logs(request: web.Request) -> web.StreamResponse:
        w, runner = find(request)
        q = request.query
        if runner.handle is None:
            return _status(f'container "{runner.c["name"]}" in pod "{w.key}" is waiting to '
                           "start", 400, "BadRequest")
        try:
            opts = logopts.parse(q, pod=request.match_info["name"], now_ns=time.time_ns())
        except logopts.InvalidLogOptions as exc:
            return _invalid(exc, request.match_info["name"])
        try:  # errors (e.g. no previous instance) become a Status before any header is sent
            chunks = runtime.read_logs(
                runner.handle, follow=opts.follow, tail_lines=opts.tail_lines,
                timestamps=opts.timestamps, previous=opts.previous, since_ns=opts.since_ns,
                limit_bytes=opts.limit_bytes)
            first = await anext(chunks, b"")
        except Exception as exc:  # noqa: BLE001 - the runtime's message, as a Status
            return _status(f"pod {w.key}: {exc}", 400, "BadRequest")
        resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        await resp.prepare(request)
        if first:
            await resp.write(first)
        async for chunk in chunks:
            await resp.write(chunk)
        await resp.write_eof()
        return resp

    async def exec_(request: web.Request) -> web.StreamResponse:
        w, runner = find(request)
        argv = request.query.getall("command", [])
        if not argv:
            return _status("you must specify at least one command for the container", 400,
                           "BadRequest")
        ws = web.WebSocketResponse(protocols=channels.EXEC_PROTOCOLS, max_msg_size=0)
        await ws.prepare(request)
        codec = channels.Codec(ws.ws_protocol or "channel.k8s.io")
        tty = request.query.get("tty") == "true"
        stdin = request.query.get("stdin") == "true"
        try:
            session = await runtime.exec(w.sandbox, argv, container=runner.c["name"],
                                         stdin=stdin, tty=tty)
        except Exception as exc:  # noqa: BLE001 - reported to the client as a Status
            await _send(ws, codec, channels.STATUS, json.dumps({
                "metadata": {}, "status": "Failure", "reason": "InternalError",
                "message": f"exec {argv!r} in {w.key}: {exc}"}).encode())
            await ws.close()
            return ws
        await _pump(ws, codec, session, stdin=stdin)
        return ws

    async def portforward_(request: web.Request) -> web.StreamResponse:
        w, _ = find(request)
        return await portforward.serve(request, dialer(w.sandbox))

    async def attach_(request: web.Request) -> web.StreamResponse:
        w, runner = find(request)
        if runner.handle is None:
            return _status(f'container {runner.c["name"]} in pod {w.key} is waiting to start',
                           400, "BadRequest")
        if request.query.get("tty") == "true" and not runner.c.get("tty"):
            return _status(f"Unable to use a TTY - container {runner.c['name']} did not "
                           "allocate one", 400, "BadRequest")
        return await attach.serve(request, runtime, runner.handle, runner.c, w.key)

    app.router.add_get(PODS + "/attach", attach_)
    app.router.add_post(PODS + "/attach", attach_)
    app.router.add_get(PODS + "/portforward", portforward_)
    app.router.add_post(PODS + "/portforward", portforward_)
    app.router.add_get(PODS + "/log", logs)
    app.router.add_get(PODS + "/exec", exec_)
    app.router.add_post(PODS + "/exec", exec_)
    return app


async def _send(ws: web.WebSocketResponse, codec: channels.Codec, channel: int,
                payload: bytes) -> None:
    frame = codec.encode(channel, payload)
    if isinstance(frame, str):
        await ws.send_str(frame)
    else:
        await ws.send_bytes(frame)


async def _pump(ws: web.WebSocketResponse, codec: channels.Codec, session: Any, *,
                stdin: bool) -> None:
    async def out(channel: int, read: Callable[[], Any]) -> None:
        while chunk := await read():
            await _send(ws, codec, channel, chunk)

    async def inp() -> None:
        async for msg in ws:
            if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                continue
            try:
                ch, data = codec.decode(msg.data)
            except channels.FrameError as exc:
                log.debug("exec: dropped a frame: %s", exc)
                continue
            if ch == channels.STDIN and stdin:
                if data:
                    await session.write_stdin(data)
            elif ch == channels.RESIZE:
                try:
                    size = json.loads(data or b"{}")
                    await session.resize(cols=int(size.get("Width", 80)),
                                         rows=int(size.get("Height", 24)))
                except (ValueError, TypeError, AttributeError) as exc:
                    log.debug("exec: bad resize %r: %s", data, exc)
            elif ch == channels.CLOSE and codec.can_close and data[:1] == bytes([channels.STDIN]):
                await session.close_stdin()
        if stdin:       # the client went away: its stdin has ended too
            await session.close_stdin()

    reader = asyncio.create_task(inp())
    try:
        await asyncio.gather(out(channels.STDOUT, session.read_stdout),
                             out(channels.STDERR, session.read_stderr))
        code = await session.wait()
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
    if code == 0:
        status: dict[str, Any] = {"metadata": {}, "status": "Success"}
    else:
        status = {"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
                  "message": f"command terminated with non-zero exit code: exit status {code}",
                  "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        await _send(ws, codec, channels.STATUS, json.dumps(status).encode())
        await ws.close()
