"""pods/attach on the kubelet API: the container's own stdin and output, as `kubectl attach`
and `kubectl run -i/-it` use them.

The stream protocol is exec's (knet.kubelet.channels). Input goes to the console the shim
keeps for a container with `stdin: true` or `tty: true` (knet.runtime.console): stdin frames,
resizes, and v5's close-stdin. Output is the container's log followed from the moment of
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

from knet.kubelet import channels
from knet.runtime import console

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

    writer: asyncio.StreamWriter | None = None
    if want_stdin or container.get("tty"):
        try:
            _, writer = await console.connect(str(handle.log_path))
        except OSError as exc:
            if want_stdin:
                log.info("attach %s/%s: no console (%s)", pod_key, container["name"], exc)

    async def inp() -> None:
        async for msg in ws:
            if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT) or writer is None:
                continue
            try:
                ch, data = codec.decode(msg.data)
            except channels.FrameError:
                continue
            if ch == channels.STDIN and want_stdin and data:
                writer.write(console.frame(console.DATA, data))
            elif ch == channels.RESIZE:
                writer.write(console.frame(console.RESIZE, data))
            elif ch == channels.CLOSE and codec.can_close and data[:1] == b"\x00":
                writer.write(console.frame(console.CLOSE, b""))
            await writer.drain()

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
        if writer is not None:
            writer.close()
        await ws.close()
    return ws
