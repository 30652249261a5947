"""pods/attach on the kubelet API: the container's own stdin and output, as `kubectl attach`
and `kubectl run -i/-it` use them.

The stream protocol is exec's (knet.kubelet.channels). Input goes to the container's own
stdin or terminal (`stdin: true` or `tty: true`) through the Runtime's `attach`: stdin
frames, resizes, and v5's close-stdin. Output is the container's log followed from the moment of
attaching (a terminal's output is in it; without one stdout and stderr both arrive on the
stdout channel). The stream ends with a Status when the container exits or the client
leaves; with `stdinOnce` the container's stdin closes when the first client leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

from knet.errors import RuntimeError_
from knet.kubelet import channels
from knet.runtime.base import Attachment

log = logging.getLogger(__name__)


async def serve(request: web.Request, runtime: Any, handle: Any, container: dict[str, Any],
                pod_key: str) -> web.StreamResponse:
    want_stdin = request.query.get("stdin") == "true"
    ws = web.WebSocketResponse(protocols=channels.EXEC_PROTOCOLS, max_msg_size=0)
    await ws.prepare(request)
    codec = channels.Codec(ws.ws_protocol or "channel.k8s.io")

    async def send(channel: int, payload: bytes) -> None:
        frame = codec.encode(channel, payload)
        if isinstance(frame, str):
            await ws.send_str(frame)
        else:
            await ws.send_bytes(frame)

    att: Attachment | None = None
    if want_stdin or container.get("tty"):
        try:
            att = await runtime.attach(handle)
        except (RuntimeError_, OSError) as exc:
            if want_stdin:
                log.info("attach %s/%s: no console (%s)", pod_key, container["name"], exc)

    async def inp() -> None:
        async for msg in ws:
            if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT) or att is None:
                continue
            try:
                ch, data = codec.decode(msg.data)
            except channels.FrameError:
                continue
            if ch == channels.STDIN and want_stdin and data:
                await att.write_stdin(data)
            elif ch == channels.RESIZE and (size := channels.terminal_size(data)):
                await att.resize(cols=size[0], rows=size[1])
            elif ch == channels.CLOSE and codec.can_close and data[:1] == b"\x00":
                await att.close_stdin()

    async def out() -> None:
        chunks = runtime.read_logs(handle, follow=True, tail_lines=0)
        async for chunk in chunks:
            await send(channels.STDOUT, chunk)

    tasks = [asyncio.ensure_future(inp()), asyncio.ensure_future(out())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if tasks[1].done() or not ws.closed:
            with contextlib.suppress(ConnectionResetError, RuntimeError):
                await send(channels.STATUS, json.dumps(
                    {"metadata": {}, "status": "Success"}).encode())
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if att is not None:
            await att.close()
        await ws.close()
    return ws
