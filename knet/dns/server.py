"""The cluster DNS server: UDP and TCP on one address:port, answers from the current Snapshot.

`DnsServer.handle` is synchronous for everything the zone answers: an ordinary query is
parsed by hand, its encoded answer looked up in the snapshot's memo (built once per
(name, type) and snapshot), and the response spliced from the query's id and question. Only
forwarding to an upstream is async. UDP uses an asyncio.DatagramProtocol (uvloop reads many
datagrams per wake-up); TCP uses length-prefixed framing on an asyncio.Protocol. Every query
lands in a bounded ring of flow records (`records()`, `follow()`) for `knet flows`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.opcode
from dns.rcode import Rcode
from dns.rdataclass import RdataClass
from dns.rdatatype import RdataType as T

from knet.dns import wire
from knet.dns.records import Snapshot

log = logging.getLogger(__name__)

MEMO_LIMIT = 50_000
_Info = tuple[bytes | str, int, int, str]  # qname (wire or text), qtype, rcode, answer
Reply = bytes | None | Awaitable[bytes | None]


@dataclass(frozen=True, slots=True)
class DnsFlow:
    """One query as `knet flows` shows it."""
    time: float
    client: str      # ip:port
    proto: str       # udp | tcp
    qname: str
    qtype: str
    rcode: str
    answer: str      # "A 10.96.0.20, ..." or "" (or the upstream's answer, "via host:port")

    def __str__(self) -> str:
        return (f"{self.client} {self.proto} {self.qname} {self.qtype} -> {self.rcode}"
                + (f" {self.answer}" if self.answer else ""))


def _type_name(qtype: int) -> str:
    try:
        return T(qtype).name
    except ValueError:
        return f"TYPE{qtype}"


class DnsServer:
    """Serves `snapshot()` (called per query: it must be cheap) on host:port, UDP and TCP.
    With `upstream`, names outside the cluster zone are forwarded there (timeout, then
    SERVFAIL); without it they get NXDOMAIN."""

    def __init__(self, snapshot: Callable[[], Snapshot], *, host: str = "0.0.0.0",
                 port: int = 53, upstream: tuple[str, int] | None = None,
                 upstream_timeout: float = 2.0, log_size: int = 10_000,
                 tcp_idle_timeout: float = 10.0) -> None:
        self._snapshot = snapshot
        self.host, self.port = host, port
        self.upstream, self.upstream_timeout = upstream, upstream_timeout
        self.tcp_idle_timeout = tcp_idle_timeout
        # entries: (time, client, proto, (qname, qtype, rcode, answer)); the inner tuple is
        # shared with the memo, so logging a cached answer allocates one small tuple
        self._ring: deque[tuple[float, tuple[str, int], str, _Info]] = deque(maxlen=log_size)
        self._followers: set[asyncio.Queue[DnsFlow]] = set()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"<DnsServer {self.host}:{self.port} upstream={self.upstream}>"

    async def start(self) -> None:
        """Binds UDP and TCP on the same port. With port 0 the kernel picks a UDP port and
        TCP follows it; if that TCP port is taken, another pair is tried."""
        loop = asyncio.get_running_loop()
        want = self.port
        for attempt in range(20):
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(self.host, want))
            self.port = self._udp.get_extra_info("sockname")[1]
            try:
                self._tcp = await loop.create_server(lambda: _TcpProtocol(self), self.host,
                                                     self.port, reuse_address=True)
                break
            except OSError:
                self._udp.close()
                if want != 0 or attempt == 19:
                    raise
        log.info("%s:%d: serving DNS (udp, tcp)", self.host, self.port)

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- answering ---------------------------------------------------------------
    def handle(self, data: bytes, client: tuple[str, int], proto: str) -> Reply:
        """The response to one query (None: drop it), or an awaitable when forwarding.

        Hot path: a UDP query whose bytes after the id were seen before in this snapshot
        (clients repeat their queries byte for byte) is answered from the memo with one
        lookup; otherwise the question is parsed and the answer pre-built per (name, type)."""
        snap = self._snapshot()
        if proto == "udp":
            hit = snap.memo.get(data[2:])
            if hit is not None:
                self._ring.append((time.time(), client, proto, hit[1]))
                if self._followers:
                    self._notify()
                body: bytes = hit[0]
                return data[:2] + body
        q = wire.parse(data)
        if q is None:
            return self._handle_slow(data, client, proto, snap)
        pre = self._prebuilt(snap, q)
        if pre.outside and self.upstream:
            return self._forward(data, client, proto, q.name, q.qtype)
        info = (q.name, q.qtype, pre.rcode, pre.summary)
        self._ring.append((time.time(), client, proto, info))
        if self._followers:
            self._notify()
        out = wire.assemble(pre, data, q, (q.edns or 512) if proto == "udp" else 65535)
        if proto == "udp":
            if len(snap.memo) >= MEMO_LIMIT:
                snap.memo.clear()
            snap.memo[data[2:]] = (out[2:], info)
        return out

    @staticmethod
    def _prebuilt(snap: Snapshot, q: wire.Question) -> wire.Prebuilt:
        key = (q.name, q.qtype)
        pre: wire.Prebuilt | None = snap.memo.get(key)
        if pre is None:
            answer = snap.lookup(wire.qname_text(q.name), q.qtype)
            pre = wire.prebuild(q.name, q.qtype, answer)
            if len(snap.memo) >= MEMO_LIMIT:
                snap.memo.clear()  # a flood of distinct names must not grow memory
            snap.memo[key] = pre
        return pre

    def _handle_slow(self, data: bytes, client: tuple[str, int], proto: str,
                     snap: Snapshot) -> Reply:
        try:
            query = dns.message.from_wire(data)
        except Exception as exc:  # noqa: BLE001 - garbage from the network, any shape
            log.debug("%s:%d: unparsable query (%s)", client[0], client[1], exc)
            self._log(client, proto, "?", 0, Rcode.FORMERR, str(exc) or type(exc).__name__)
            return wire.error(data, Rcode.FORMERR)
        if query.flags & dns.flags.QR:
            return None
        resp = dns.message.make_response(query)
        resp.flags |= dns.flags.AA | dns.flags.RA
        if query.opcode() != dns.opcode.QUERY or len(query.question) != 1:
            resp.set_rcode(Rcode.NOTIMP if len(query.question) == 1 else Rcode.FORMERR)
            return resp.to_wire()
        question = query.question[0]
        name = question.name.to_text()
        if question.rdclass != RdataClass.IN:
            resp.set_rcode(Rcode.REFUSED)
            return resp.to_wire()
        answer = snap.lookup(name, question.rdtype)
        if answer.outside and self.upstream:
            return self._forward(data, client, proto, name, question.rdtype)
        wire.fill(resp, answer)
        self._log(client, proto, name, question.rdtype, answer.rcode, wire.summary(answer.answer))
        limit = max(512, query.payload) if query.edns >= 0 else 512
        try:
            return resp.to_wire(max_size=limit if proto == "udp" else 65535)
        except dns.exception.TooBig:
            trunc = dns.message.make_response(query)
            trunc.flags |= dns.flags.AA | dns.flags.RA | dns.flags.TC
            return trunc.to_wire()

    async def _forward(self, data: bytes, client: tuple[str, int], proto: str,
                       qname: bytes | str, qtype: int) -> bytes | None:
        assert self.upstream is not None
        host, port = self.upstream
        query = dns.message.from_wire(data)
        try:
            if proto == "udp":
                resp = await dns.asyncquery.udp(query, host, port=port,
                                                timeout=self.upstream_timeout)
            else:
                resp = await dns.asyncquery.tcp(query, host, port=port,
                                                timeout=self.upstream_timeout)
        except (dns.exception.DNSException, OSError) as exc:
            log.warning("%s:%d: upstream %s:%d failed for %s (%s); answering SERVFAIL",
                        client[0], client[1], host, port, qname if isinstance(qname, str)
                        else wire.qname_text(qname), type(exc).__name__)
            self._log(client, proto, qname, qtype, Rcode.SERVFAIL, f"via {host}:{port} failed")
            return wire.error(data, Rcode.SERVFAIL)
        answers = ", ".join(f"{dns.rdatatype.to_text(rr.rdtype)} {rd}"
                            for rr in resp.answer for rd in rr)
        self._log(client, proto, qname, qtype, Rcode(resp.rcode()),
                  f"{answers} via {host}:{port}".strip())
        return resp.to_wire()

    # -- query log ---------------------------------------------------------------
    def _log(self, client: tuple[str, int], proto: str, qname: bytes | str, qtype: int,
             rcode: Rcode, answer: str) -> None:
        self._ring.append((time.time(), client, proto, (qname, qtype, rcode, answer)))
        if self._followers:
            self._notify()

    def _notify(self) -> None:
        flow = self._flow(self._ring[-1])
        for queue in self._followers:
            if queue.full():
                continue  # a slow reader misses records rather than slowing DNS down
            queue.put_nowait(flow)

    @staticmethod
    def _flow(entry: tuple[float, tuple[str, int], str, _Info]) -> DnsFlow:
        t, client, proto, (qname, qtype, rcode, answer) = entry
        name = wire.qname_text(qname) if isinstance(qname, bytes) else qname
        return DnsFlow(t, f"{client[0]}:{client[1]}", proto, name, _type_name(qtype),
                       Rcode(rcode).name, answer)

    def records(self) -> list[DnsFlow]:
        """The query log, oldest first (bounded: the newest `log_size` queries)."""
        return [self._flow(e) for e in list(self._ring)]

    async def follow(self, *, backlog: int = 1000) -> AsyncIterator[DnsFlow]:
        """Each new query's flow record as it happens, until the caller stops iterating."""
        queue: asyncio.Queue[DnsFlow] = asyncio.Queue(maxsize=backlog)
        self._followers.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._followers.discard(queue)

    def _spawn(self, reply: Awaitable[bytes | None], send: Callable[[bytes], None]) -> None:
        async def run() -> None:
            out = await reply
            if out is not None:
                send(out)
        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            out = self.server.handle(data, addr, "udp")
        except Exception:
            log.exception("%s:%d: failed to answer a query", addr[0], addr[1])
            return
        if out is None or self.transport is None:
            return
        if isinstance(out, bytes):
            self.transport.sendto(out, addr)
        else:
            transport = self.transport
            self.server._spawn(out, lambda b: transport.sendto(b, addr))

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc)


class _TcpProtocol(asyncio.Protocol):
    """RFC 7766 framing: 2-byte length, then the message; several per connection."""

    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("?", 0)
        self.idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername")[:2]
        self._arm()

    def _arm(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        assert self.transport is not None
        self.idle = asyncio.get_running_loop().call_later(
            self.server.tcp_idle_timeout, self.transport.close)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.idle is not None:
            self.idle.cancel()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._arm()
        while len(self.buf) >= 2:
            size = self.buf[0] << 8 | self.buf[1]
            if len(self.buf) < 2 + size:
                return
            msg, self.buf = self.buf[2:2 + size], self.buf[2 + size:]
            self._answer(msg)

    def _answer(self, msg: bytes) -> None:
        try:
            out = self.server.handle(msg, self.peer, "tcp")
        except Exception:
            log.exception("%s:%d: failed to answer a query", *self.peer)
            return
        if out is None:
            return
        if isinstance(out, bytes):
            self._send(out)
        else:
            self.server._spawn(out, self._send)

    def _send(self, out: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(len(out).to_bytes(2, "big") + out)
