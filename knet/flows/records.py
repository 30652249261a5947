"""`knet flows`: every node's proxy flow records and the cluster DNS query log, merged in
time order, filtered, and written one line each (or one JSON object each).

Sources: each node's kube-proxy process at GET /flows on its unix socket in the state dir
(`DIR/proxy/NODE.sock`, plain HTTP: only root on the host reaches it) and each DNS pod's
`https://POD_IP:9153/flows` over mutual TLS (the view's `tls`: cluster CA + the `knet-flows`
client certificate; verified as kube-dns.kube-system.svc). A snapshot fetches them all at once and sorts by time; `follow`
opens every `?follow=1` stream and yields records as they come (per-source order; sources
interleave as they arrive). A source that cannot be reached is reported, never hidden.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from knet.flows.cluster import ClusterView

log = logging.getLogger(__name__)

__all__ = [
    "DNS_FLOWS_PORT",
    "Flow",
    "FlowFilter",
    "Source",
    "follow",
    "format_flow",
    "snapshot",
    "sources",
]

DNS_FLOWS_PORT = 9153
DNS_FLOWS_SERVER_NAME = "kube-dns.kube-system.svc"   # knet.cluster.system.FLOWS_SERVER_NAME
TIMEOUT = 5.0
Flow = dict[str, Any]          # a proxy FlowRecord or a DnsFlow as JSON, plus "kind", "source"


@dataclass(frozen=True)
class Source:
    kind: str                  # "proxy" | "dns"
    name: str                  # node name or DNS pod key
    url: str                   # .../flows
    node: str
    server_name: str | None = None   # the name the server's certificate must carry
    socket: str = ""           # a unix socket to send the request to (the proxy's)

    @property
    def where(self) -> str:
        return f"unix:{self.socket}" if self.socket else self.url


def sources(view: ClusterView) -> list[Source]:
    out = [Source("proxy", n.name, "http://localhost/flows", n.name, socket=n.flows_socket)
           for n in sorted(view.nodes.values(), key=lambda n: n.name) if n.flows_socket]
    for pod in sorted(view.pods.values(), key=lambda p: p.key):
        if pod.labels.get("k8s-app") == "kube-dns" and pod.ip and pod.phase == "Running":
            out.append(Source("dns", pod.key, f"https://{pod.ip}:{DNS_FLOWS_PORT}/flows",
                              pod.node, DNS_FLOWS_SERVER_NAME))
    return out


@dataclass(frozen=True)
class FlowFilter:
    pod: str = ""              # either side
    from_pod: str = ""
    to_pod: str = ""
    service: str = ""
    namespace: str = ""
    node: str = ""
    verdict: str = ""
    protocol: str = ""
    since: float | None = None

    def __call__(self, f: Flow) -> bool:
        return all(check(self, f) for check in _CHECKS)


def _match_pod(want: str, have: str) -> bool:
    return bool(have) and (have == want or have.split("/", 1)[-1] == want)


def _pods_of(f: Flow) -> tuple[str, str]:
    if f["kind"] == "dns":
        return f.get("client_pod", ""), f.get("source", "")
    return f.get("client_pod", ""), f.get("endpoint_pod", "")


_CHECKS: tuple[Callable[[FlowFilter, Flow], bool], ...] = (
    lambda ff, f: not ff.pod or any(_match_pod(ff.pod, p) for p in _pods_of(f)),
    lambda ff, f: not ff.from_pod or _match_pod(ff.from_pod, _pods_of(f)[0]),
    lambda ff, f: not ff.to_pod or _match_pod(ff.to_pod, _pods_of(f)[1]),
    lambda ff, f: not ff.service or (f["kind"] == "proxy" and _match_pod(ff.service,
                                                                          f.get("service", ""))),
    lambda ff, f: not ff.namespace or any(
        p.split("/", 1)[0] == ff.namespace for p in (*_pods_of(f), f.get("service", "")) if p),
    lambda ff, f: not ff.node or f.get("node") == ff.node,
    lambda ff, f: not ff.verdict or _verdict(f).upper() == ff.verdict.upper(),
    lambda ff, f: not ff.protocol or ff.protocol.lower() in (f.get("protocol", ""), f["kind"]),
    lambda ff, f: ff.since is None or f["time"] >= ff.since,
)


def _verdict(f: Flow) -> str:
    return str(f.get("verdict") or f.get("rcode") or "")


def normalize(raw: dict[str, Any], src: Source, view: ClusterView) -> Flow:
    """A record from a source, with its kind and names filled in from the cluster view."""
    f: Flow = {**raw, "kind": src.kind, "source": src.name}
    if src.kind == "dns":
        ip, _, port = str(raw.get("client", "")).rpartition(":")
        f.update(node=src.node, protocol=raw.get("proto", "udp"), client_ip=ip,
                 client_port=int(port or 0), client_pod=view.name_of(ip))
        f["verdict"] = raw.get("rcode", "")
    else:
        for side in ("client", "endpoint"):
            if not f.get(f"{side}_pod"):
                f[f"{side}_pod"] = view.name_of(f.get(f"{side}_ip", ""))
    return f


def _session(src: Source, view: ClusterView, **kw: Any) -> aiohttp.ClientSession:
    conn: aiohttp.BaseConnector = (
        aiohttp.UnixConnector(path=src.socket) if src.socket
        else aiohttp.TCPConnector(ssl=view.tls if view.tls is not None else True))
    return aiohttp.ClientSession(connector=conn, **kw)


def _hint(src: Source) -> str:
    return " (is its kube-proxy running? see 'knet status')" if src.socket else ""


async def _fetch(src: Source, since: float | None, view: ClusterView,
                 errors: list[str]) -> list[Flow]:
    params = {"since": str(since)} if since is not None and src.kind == "proxy" else {}
    try:
        async with _session(src, view) as session, session.get(
                src.url, params=params, server_hostname=src.server_name,
                timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as resp:
            resp.raise_for_status()
            rows = await resp.json(content_type=None)
    except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
        errors.append(f"{src.kind} {src.name}: {src.where} unreachable ({type(exc).__name__}: "
                      f"{exc}); its flows are missing{_hint(src)}")
        return []
    return [normalize(r, src, view) for r in rows]


async def snapshot(view: ClusterView, *, flt: FlowFilter, last: int | None = None,
                   errors: list[str]) -> list[Flow]:
    """Every source's records that pass `flt`, oldest first, the last `last` of them."""
    parts = await asyncio.gather(*(_fetch(s, flt.since, view, errors) for s in sources(view)))
    flows = sorted((f for part in parts for f in part if flt(f)), key=lambda f: f["time"])
    return flows[-last:] if last else flows


async def follow(view: ClusterView, *, flt: FlowFilter,
                 errors: Callable[[str], None]) -> AsyncIterator[Flow]:
    """Records as they happen, from every source, until cancelled."""
    queue: asyncio.Queue[Flow] = asyncio.Queue(maxsize=10_000)
    tasks = [asyncio.create_task(_stream(src, view, queue, errors)) for src in sources(view)]
    try:
        while True:
            f = await queue.get()
            if flt(f):
                yield f
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _stream(src: Source, view: ClusterView, queue: asyncio.Queue[Flow],
                  errors: Callable[[str], None]) -> None:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=TIMEOUT)
    try:
        async with _session(src, view, timeout=timeout) as session, session.get(
                src.url, params={"follow": "1"}, server_hostname=src.server_name) as resp:
            resp.raise_for_status()
            async for line in resp.content:
                if line.strip():
                    await queue.put(normalize(json.loads(line), src, view))
    except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
        errors(f"{src.kind} {src.name}: follow stream of {src.where} ended ({exc}){_hint(src)}")


# --- the one-line form ----------------------------------------------------------------------
def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


def _who(pod: str, ip: str, port: int | str) -> str:
    addr = f"{ip}:{port}" if ip else "?"
    return f"{pod} ({addr})" if pod else addr


def format_flow(f: Flow) -> str:
    """`12:04:05.123 default/client (10.244.1.4:51122) -> svc default/web:80 -> ...`"""
    head = f"{_clock(f['time'])} {_who(f.get('client_pod', ''), f.get('client_ip', ''), f.get('client_port', 0))}"
    if f["kind"] == "dns":
        ans = f" {f['answer']}" if f.get("answer") else ""
        return (f"{head} -> dns {f['source']} {f.get('qname', '')} {f.get('qtype', '')} "
                f"{f.get('rcode', '')} {f.get('protocol', '')}{ans}")
    if f.get("verdict") == "DROPPED" and not f.get("service"):   # a NetworkPolicy drop
        dst = _who(f.get("endpoint_pod", ""), f.get("endpoint_ip", ""), f.get("endpoint_port", 0))
        by = ", ".join(f.get("netpol_policies") or []) or "?"
        return (f"{head} -> {dst} DROPPED {f.get('protocol', '')} {f.get('reason', '')}: "
                f"{f.get('netpol_pod', '')} isolated by {by} [{f.get('node', '')}]")
    parts = [head, f"-> svc {f['service']}:{f['service_port']}" if f.get("service")
             else f"-> mesh inbound :{f.get('service_port', 0)}"]
    if f.get("endpoint_ip"):
        parts.append(f"-> {_who(f.get('endpoint_pod', ''), f['endpoint_ip'], f['endpoint_port'])}")
    parts += [f["verdict"], f["protocol"]]
    if f.get("algorithm") or f.get("reason"):
        parts.append(" ".join(x for x in (f.get("algorithm"), f.get("reason")) if x))
    if f.get("method"):
        parts.append(f"{f['method']} {f.get('path', '')} {f.get('status') or '-'}")
    parts.append(f"bytes {f.get('bytes_sent', 0)}/{f.get('bytes_received', 0)}")
    parts.append(f"{f.get('duration', 0.0) * 1000:.1f}ms")
    if f.get("mtls") or f.get("source_identity") or f.get("destination_identity"):
        parts.append(f"{'mtls' if f.get('mtls') else 'plaintext'} "
                     f"{f.get('source_identity') or '-'} -> {f.get('destination_identity') or '-'}")
    if f.get("authz"):
        parts.append(f"authz {f['authz']} {f.get('authz_policy', '')}".rstrip())
    if f.get("error"):
        parts.append(f"({f['error']})")
    parts.append(f"[{f['node']}]")
    return " ".join(parts)
