"""The one real request `knet trace` sends, from inside the client pod's netns: a DNS query
to the cluster DNS, a TCP connect (+ an HTTP GET), or a UDP datagram.

Sockets are made after a thread-local setns (`in_netns`) and then used from this thread as
usual; every wait has a timeout. Results are data (what happened, the local port used, the
answer), never exceptions: a refused or reset connection is an outcome the trace explains.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

import dns.message
import dns.rcode
import dns.rdatatype

from control.addresses import CLUSTER_DNS_IP
from knet.dataplane.nsutil import in_netns

__all__ = ["Answer", "DnsAnswer", "dns_lookup", "search_names", "tcp_request", "udp_request"]

TIMEOUT = 3.0


@dataclass
class Answer:
    ok: bool
    local: tuple[str, int]       # the client's ip:port, to find its packets and flow record
    error: str = ""              # "connection reset", "connection refused", "timed out"
    status: int = 0              # HTTP status, if any
    upstream: str = ""           # x-knet-upstream header or whoami's Hostname:
    received: int = 0
    started_ns: int = 0
    seconds: float = 0.0


@dataclass
class DnsAnswer:
    qname: str
    rcode: str
    addresses: list[str]
    server: str
    seconds: float


def _sock(netns: str, kind: int) -> socket.socket:
    with in_netns(netns):
        s = socket.socket(socket.AF_INET, kind)
    s.settimeout(TIMEOUT)
    return s


def _error(exc: OSError) -> str:
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return f"timed out after {TIMEOUT:.0f}s"
    return exc.strerror or str(exc)


def _parse_http(raw: bytes, ans: Answer) -> None:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) >= 2 and parts[0].startswith("HTTP/") and parts[1].isdigit():
        ans.status = int(parts[1])
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "x-knet-upstream":
            ans.upstream = v.strip()
    for line in body.decode("utf-8", "replace").splitlines():
        if line.startswith("Hostname:") and not ans.upstream:
            ans.upstream = line.split(":", 1)[1].strip()


def tcp_request(netns: str, ip: str, port: int, *, http_host: str = "") -> Answer:
    """Connect to ip:port from the pod; with `http_host`, send a GET / and read the answer."""
    s = _sock(netns, socket.SOCK_STREAM)
    s.bind(("0.0.0.0", 0))
    ans = Answer(ok=False, local=s.getsockname(), started_ns=time.time_ns())
    t0 = time.monotonic()
    try:
        s.connect((ip, port))
        ans.local = s.getsockname()
        if http_host:
            s.sendall(f"GET / HTTP/1.1\r\nHost: {http_host}\r\nUser-Agent: knet-trace\r\n"
                      "Connection: close\r\n\r\n".encode())
            raw = b""
            while len(raw) < 1 << 16:
                chunk = s.recv(65536)
                if not chunk:
                    break
                raw += chunk
            ans.received = len(raw)
            _parse_http(raw, ans)
            if not raw:
                ans.error = "connection closed without an answer"
        ans.ok = not ans.error
    except OSError as exc:
        ans.error = _error(exc)
    finally:
        ans.seconds = time.monotonic() - t0
        s.close()
    return ans


def dns_query_wire(name: str = "kubernetes.default.svc.cluster.local.") -> bytes:
    """A real DNS query (A) to send when tracing a UDP port 53 service."""
    return bytes(dns.message.make_query(name, dns.rdatatype.A).to_wire())


def udp_request(netns: str, ip: str, port: int, *, payload: bytes | None = None) -> Answer:
    """Send one datagram (default b"knet trace\\n") from the pod and wait for one back."""
    payload = b"knet trace\n" if payload is None else payload
    s = _sock(netns, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 0))
    ans = Answer(ok=False, local=s.getsockname(), started_ns=time.time_ns())
    t0 = time.monotonic()
    try:
        s.connect((ip, port))
        ans.local = s.getsockname()
        s.send(payload)
        ans.received = len(s.recv(65536))
        ans.ok = True
    except OSError as exc:
        ans.error = _error(exc) if not isinstance(exc, TimeoutError) else \
            f"no answer within {TIMEOUT:.0f}s"
    finally:
        ans.seconds = time.monotonic() - t0
        s.close()
    return ans


def search_names(name: str, namespace: str) -> list[str]:
    """The names a pod's resolver tries (search path, ndots:5), in order."""
    if name.endswith("."):
        return [name]
    suffixes = [f"{namespace}.svc.cluster.local", "svc.cluster.local", "cluster.local"]
    tried = [f"{name}.{s}." for s in suffixes]
    return tried + [name + "."] if name.count(".") < 5 else [name + "."] + tried


def dns_lookup(netns: str, name: str, *, namespace: str, server: str = CLUSTER_DNS_IP,
               port: int = 53) -> DnsAnswer:
    """Resolve `name` as the pod would (search path), over UDP to the cluster DNS."""
    last = DnsAnswer(name, "no answer", [], server, 0.0)
    for qname in search_names(name, namespace):
        t0 = time.monotonic()
        q = dns.message.make_query(qname, dns.rdatatype.A)
        s = _sock(netns, socket.SOCK_DGRAM)
        try:
            s.sendto(q.to_wire(), (server, port))
            resp = dns.message.from_wire(s.recv(65535))
        except OSError as exc:
            return DnsAnswer(qname, _error(exc), [], server, time.monotonic() - t0)
        finally:
            s.close()
        addrs = [r.address for rrset in resp.answer if rrset.rdtype == dns.rdatatype.A
                 for r in rrset]
        last = DnsAnswer(qname, dns.rcode.to_text(resp.rcode()), addrs, server,
                         time.monotonic() - t0)
        if addrs:
            return last
    return last
