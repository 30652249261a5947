"""The DNS query log over HTTPS with mutual TLS, for `knet flows` when DNS runs as a pod:

    GET /flows            JSON array of flow records, oldest first
    GET /flows?follow=1   newline-delimited JSON, one record per query as it happens

Who asked what is private: the server presents a certificate of the cluster CA and requires
one from the client (a pod has none, so its handshake fails); the client's certificate must
name group system:masters (knet's host-side reader, `knet-flows`), else 403.
A minimal HTTP/1.1 responder on asyncio streams (one request per connection): the DNS
process must not depend on a web framework for a debugging side door.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import ssl

from control.api.ca import SYSTEM_MASTERS, peer_identity
from knet.dns.server import DnsFlow, DnsServer

log = logging.getLogger(__name__)

READ_TIMEOUT = 5.0


def _row(flow: DnsFlow) -> dict[str, object]:
    return dataclasses.asdict(flow)


class FlowsApi:
    def __init__(self, server: DnsServer, *, host: str, port: int, tls: ssl.SSLContext) -> None:
        if tls.verify_mode != ssl.CERT_REQUIRED:
            raise ValueError("DNS query log: the TLS context must require client certificates")
        self.dns, self.host, self.port, self.tls = server, host, port, tls
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port,
                                                  reuse_address=True, ssl=self.tls,
                                                  ssl_handshake_timeout=READ_TIMEOUT)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("%s:%d: serving the DNS query log at /flows (mutual TLS)", self.host,
                 self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            target = parts[1] if len(parts) == 3 else ""
            path, _, query = target.partition("?")
            who = peer_identity(writer.get_extra_info("peercert"))
            if who is None or SYSTEM_MASTERS not in who.groups:
                await self._reply(writer, "403 Forbidden", "text/plain",
                                  f"Forbidden (user={who.user if who else ''}): the DNS query "
                                  "log is for group system:masters\n".encode())
            elif parts[0] != "GET" or path != "/flows":
                await self._reply(writer, "404 Not Found", "text/plain", b"try GET /flows\n")
            elif "follow=1" in query.split("&") or "follow=true" in query.split("&"):
                await self._follow(writer)
            else:
                body = json.dumps([_row(f) for f in self.dns.records()]).encode()
                await self._reply(writer, "200 OK", "application/json", body)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError,
                ssl.SSLError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, status: str, ctype: str, body: bytes) -> None:
        writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: "
                     f"{len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        await writer.drain()

    async def _follow(self, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                     b"Connection: close\r\n\r\n")
        await writer.drain()
        async for flow in self.dns.follow():
            writer.write(json.dumps(_row(flow)).encode() + b"\n")
            await writer.drain()
