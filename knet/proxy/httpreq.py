"""One request on the L7 path (knet/proxy/http.py) while it is in flight, and the answers the
proxy gives itself (4xx/5xx with `x-knet-upstream: none`) when no backend's answer is relayed.
Plain data and pure functions: the connection (httpconn.py) does the I/O."""

from __future__ import annotations

import time
from http import HTTPStatus

from knet.mesh.exchange import Exchange
from knet.proxy.balancer import Pick
from knet.proxy.flows import FlowRecord
from knet.proxy.http1 import Request

MAX_BODY = 8 << 20
REASONS = {400: b"Bad Request", 408: b"Request Timeout", 413: b"Content Too Large",
            431: b"Request Header Fields Too Large", 501: b"Not Implemented",
            502: b"Bad Gateway", 503: b"Service Unavailable", 504: b"Gateway Timeout",
            505: b"HTTP Version Not Supported"}


class Req:
    """One request in flight: what to send, where it went, how often it was tried."""

    __slots__ = (
        "attempt",
        "data",
        "deadline",
        "error",
        "fresh",
        "head_only",
        "keep",
        "method",
        "mx",
        "pick",
        "rec",
        "start",
        "target",
    )

    def __init__(self, request: Request, rec: FlowRecord) -> None:
        self.data, self.rec = request.data, rec
        self.head_only = request.head_only
        self.keep = request.keep
        self.start = time.monotonic()
        self.attempt = 0
        self.pick: Pick | None = None
        self.fresh = False  # a stale pooled connection was replaced by a fresh dial
        self.error = ""
        self.method, self.target = request.method, request.target
        self.mx: Exchange | None = None  # the mesh's plan for this request, if meshed
        self.deadline = 0.0  # the whole request's deadline (a try may end sooner)


def fill_pick(rec: FlowRecord, pick: Pick) -> None:
    rec.endpoint_ip, rec.endpoint_port = pick.endpoint.ip, pick.endpoint.port
    rec.endpoint_pod, rec.reason = pick.endpoint.pod, pick.reason
    rec.algorithm = pick.algorithm


def reason_phrase(status: int) -> bytes:
    if status in REASONS:
        return REASONS[status]
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Unknown"


def simple_answer(status: int, why: str, *, close: bool, body: str | None = None) -> bytes:
    reason = reason_phrase(status)
    text = (body if body is not None else f"{status} {reason.decode()}: {why}\n").encode()
    return (b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nx-knet-upstream: none\r\nConnection: %s\r\n\r\n"
            % (status, reason, len(text), b"close" if close else b"keep-alive")) + text
