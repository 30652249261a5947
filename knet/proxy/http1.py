"""Strict HTTP/1.1 parsing for the L7 path, requests and responses alike, on llhttp.

llhttp (through httptools, leniencies off) does the RFC 9112 grammar: request and status
lines, header tokens, bare CR/LF, obs-fold, Content-Length (digits only, one), Transfer-
Encoding with chunked last, never both, and chunk framing. On top of it this module adds
what a proxy needs and llhttp leaves out: HTTP/1.x only, one Host, `chunked` as the only
transfer coding, size limits, hop-by-hop removal. Any error is a `Reject` (status + why) and
ends the connection. Bodies come out decoded and are framed again on the way out (requests
with Content-Length, chunked responses re-chunked), so what the next hop reads is what this
parser read: no second interpretation of the bytes can exist. Cost, measured against the
hand-written regex parser it replaced (same session, alternating runs, 2 shared cores):
`bench proxy --only 'knet L7 http'` medians 7,467 vs 7,249 req/s; proxy CPU per request
on loopback (wrk -c32, 8 runs each) median 82 vs 80 us. The C parser holds the speed.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import httptools

__all__ = [
    "HOP_BY_HOP",
    "MAX_HEAD",
    "Reject",
    "Request",
    "RequestReader",
    "Response",
    "ResponseReader",
]

MAX_HEAD = 64 * 1024  # start line + header fields (nginx: 4 x 8 KiB buffers; Envoy: 60 KiB)
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
                        b"upgrade", b"proxy-authenticate", b"proxy-authorization"})
# read by the reader itself, re-emitted in canonical form (never forwarded as received)
_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"expect", b"host"})
_SPECIAL = HOP_BY_HOP | _FRAMING
_PLAIN = frozenset({b"close", b"keep-alive", b"upgrade", b"te", b""})
_VERSIONS = ("1.1", "1.0")


class Reject(Exception):
    """A message the L7 path refuses: `status` for the client (400, 413, 431, 501, 505; 502
    when a backend sent it) and `why` for the flow record."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status, self.why = status, why


class _Done(Exception):
    """Raised from a callback to stop llhttp (a HEAD response: no body may follow)."""


@dataclass(slots=True)
class Request:
    method: bytes
    target: bytes
    data: bytes              # what goes to the backend: head (canonical framing) + body
    keep: bool               # the client wants the connection kept
    head_only: bool          # HEAD: the response has no body whatever its headers say


@dataclass(slots=True)
class Response:
    status: int
    reason: bytes
    fields: bytes            # header lines to forward (CRLF-terminated), minus hop-by-hop
    length: int | None       # Content-Length
    chunked: bool
    keep: bool


@dataclass(slots=True)
class _Framing:
    fields: bytes            # the header lines to forward, CRLF-terminated
    length: bytes | None     # Content-Length as sent (llhttp checked it: digits, only one)
    chunked: bool
    hosts: int
    expect: bool             # Expect: 100-continue


class _Reader:
    """What both readers share: header fields as llhttp reports them, sorted as they come
    (the few that frame the message or are hop-by-hop put aside, the rest kept as lines).
    One cheap callback per field: the work happens once, at the end of the head."""

    in_head: bool
    _lines: list[bytes]
    _special: list[tuple[bytes, bytes]]

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.in_head:  # after the head: trailer fields, dropped
            low = name.lower()
            if low in _SPECIAL:
                self._special.append((low, value.strip(b" \t")))
                if low != b"host":
                    return
            self._lines += (name, b": ", value, b"\r\n")

    def _framing(self, peer: str, extra: int) -> _Framing:
        """The head's fields for forwarding; Reject (431 or 502) if over MAX_HEAD."""
        fields = b"".join(self._lines)
        if len(fields) + extra > MAX_HEAD:
            raise Reject(431 if peer == "client" else 502,
                         f"{'request' if peer == 'client' else 'response'} head over "
                         f"{MAX_HEAD} bytes")
        length = te = None
        hosts, expect, named = 0, False, set()
        for low, value in self._special:
            if low == b"content-length":
                length = value
            elif low == b"transfer-encoding":
                te = value if te is None else te + b"," + value
            elif low == b"host":
                hosts += 1
            elif low == b"expect":
                expect = value.lower() == b"100-continue"
            elif low == b"connection" and value.lower() not in _PLAIN:
                named |= {t.strip().lower() for t in value.split(b",")} - _PLAIN
        if named:  # headers that Connection names are hop-by-hop too (RFC 9110 7.6.1)
            lines = self._lines
            fields = b"".join(b"".join(lines[i:i + 4]) for i in range(0, len(lines), 4)
                              if lines[i].lower() not in named)
        return _Framing(fields, length, _chunked(te, peer), hosts, expect)


def _strict(parser: httptools.HttpRequestParser | httptools.HttpResponseParser) -> None:
    """Every llhttp leniency off, said out loud (the default today; a default may change)."""
    parser.set_dangerous_leniencies(
        lenient_headers=False, lenient_chunked_length=False, lenient_keep_alive=False,
        lenient_transfer_encoding=False, lenient_version=False,
        lenient_data_after_close=False, lenient_optional_lf_after_cr=False,
        lenient_optional_cr_before_lf=False, lenient_optional_crlf_after_chunk=False,
        lenient_spaces_after_chunk_size=False)


def _chunked(te: bytes | None, peer: str) -> bool:
    """Whether the body is chunked; Reject unless `chunked` is the one transfer coding:
    400 when it is not the last (RFC 9112 6.3), 501 for any other (6.1); 502 from a
    backend (a response read to the close is not relayed)."""
    if te is None:
        return False
    codings = [c.strip().lower() for c in te.split(b",")]
    if codings == [b"chunked"]:
        return True
    status = 502 if peer == "backend" else 400 if codings[-1] != b"chunked" else 501
    raise Reject(status, f"Transfer-Encoding {te[:40].decode('latin-1')!r} from the {peer}: "
                         "only 'chunked' is supported")


def _parse_error(exc: Exception, status: int) -> Reject:
    """llhttp's error as a Reject: ours when a callback raised one, else `status`."""
    ctx = exc.__context__
    if isinstance(ctx, Reject):
        return ctx
    return Reject(status, f"malformed HTTP/1.1: {exc}")


class RequestReader(_Reader):
    """Client bytes in (`feed`), complete requests out (`ready`, in order). The first error
    is kept in `error` and nothing after it is read; the requests before it still count."""

    def __init__(self, extra: bytes, *, max_body: int, host: bytes = b"") -> None:
        """extra: header lines added to each request; host: the Host value for an HTTP/1.0
        request without one (it goes on as HTTP/1.1, where Host is required)."""
        self.extra, self.max_body = extra, max_body
        self.host = b"Host: %s\r\n" % host if host else b""
        self.ready: deque[Request] = deque()
        self.error: Reject | None = None
        self.began = 0.0          # monotonic start of the message being read (0: none)
        self.in_head = False
        self.continued = False    # 100 Continue sent for the message being read
        self.expect = False
        self._p = httptools.HttpRequestParser(self)
        _strict(self._p)
        self._lines: list[bytes] = []
        self._special: list[tuple[bytes, bytes]] = []
        self._target = b""
        self._body: list[bytes] = []
        self._size = 0
        self._f = _Framing(b"", None, False, 0, False)
        self._keep = True
        self._chunked = False
        self._framed = False
        self._raw = self._n = 0

    @property
    def reading(self) -> bool:
        """A message has begun and is not complete yet."""
        return self.began > 0

    def feed(self, data: bytes) -> None:
        if self.error is not None:
            return
        n = self._n if self.in_head else -1
        try:
            self._p.feed_data(data)
        except httptools.HttpParserUpgrade as exc:  # Upgrade/CONNECT: parsed as a plain request
            self._after_upgrade(data[exc.args[0]:])
        except httptools.HttpParserError as exc:
            self.error = _parse_error(exc, 400)
        if self.in_head and self.error is None and n == self._n:
            self._raw += len(data)  # a whole read inside an unfinished head: all head bytes
            if self._raw > MAX_HEAD:  # (httptools holds a partial field; this bounds it)
                self.error = Reject(431, f"request head over {MAX_HEAD} bytes")

    def _after_upgrade(self, rest: bytes) -> None:
        if rest:  # the upgrade request went on as a plain one (Upgrade is hop-by-hop)
            self.feed(rest)

    # llhttp callbacks (httptools calls them by name)

    def on_message_begin(self) -> None:
        self.began, self.in_head, self.continued = time.monotonic(), True, False
        self._lines, self._special, self._body, self._size, self._target = [], [], [], 0, b""
        self._raw, self._n = 0, self._n + 1

    def on_url(self, url: bytes) -> None:
        self._target += url

    def on_headers_complete(self) -> None:
        self.in_head = False
        p = self._p
        self._f = f = self._framing("client", len(self._target))
        version = p.get_http_version()
        if version not in _VERSIONS:
            raise Reject(505 if version[0] != "0" else 400, f"HTTP/{version} is not supported")
        if f.hosts != 1 and (f.hosts or version == "1.1"):
            raise Reject(400, "a request needs exactly one Host header (RFC 9112 3.2)")
        self._chunked = f.chunked
        if self._chunked and version == "1.0":
            raise Reject(400, "Transfer-Encoding in an HTTP/1.0 request (RFC 9112 6.1)")
        if f.length is not None and int(f.length) > self.max_body:
            raise Reject(413, f"request body over {self.max_body} bytes")
        self._framed = self._chunked or (f.length is not None and f.length != b"0")
        if p.get_method() == b"CONNECT":
            raise Reject(501, "CONNECT is not supported on the L7 path")
        if self._framed and p.should_upgrade():  # llhttp would skip the body
            raise Reject(400, "an Upgrade request with a body is not supported")
        self._keep = p.should_keep_alive()
        self.expect = f.expect and self._framed

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self.max_body:
            raise Reject(413, f"request body over {self.max_body} bytes")
        self._body.append(body)

    def on_message_complete(self) -> None:
        f, method = self._f, self._p.get_method()
        body = b"".join(self._body) if len(self._body) != 1 else self._body[0]
        length = b"Content-Length: %d\r\n" % len(body) if (
            body or f.length is not None or self._chunked) else b""
        data = b"%s %s HTTP/1.1\r\n%s%s%s%s\r\n%s" % (
            method, self._target, f.fields, b"" if f.hosts else self.host, length, self.extra,
            body)
        self.ready.append(Request(method, self._target, data, self._keep, method == b"HEAD"))
        self.began, self._target, self._body, self.expect = 0.0, b"", [], False


class ResponseReader(_Reader):
    """Backend bytes in (`feed`); the head comes out as `head` (interim 1xx skipped), the body
    as `body` pieces, framed for the client; `done` once the response is complete, `extra`
    when bytes follow it (the connection is then not reused)."""

    def __init__(self) -> None:
        self._p = httptools.HttpResponseParser(self)
        _strict(self._p)
        self.head_only = False
        self.reset()
        self._stopped = False
        self._raw = self._n = 0

    def reset(self) -> None:
        """Ready for the next exchange on the same connection."""
        self.head: Response | None = None
        self.body: list[bytes] = []
        self.done = self.extra = False
        self._lines: list[bytes] = []
        self._special: list[tuple[bytes, bytes]] = []
        self._reason = b""
        self.in_head = False
        self._chunked = False

    @property
    def usable(self) -> bool:
        return not self._stopped

    def feed(self, data: bytes) -> None:
        """Raises Reject (502) on a malformed response."""
        if self._stopped:
            self.extra = True
            return
        n = self._n if self.in_head else -1
        try:
            self._p.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._stopped = True
            raise Reject(502, "the backend switched protocols (101) unasked") from None
        except httptools.HttpParserError as exc:
            self._stopped = True
            if isinstance(exc.__context__, _Done):
                return
            raise _parse_error(exc, 502) from None
        if self.in_head and n == self._n:
            self._raw += len(data)
            if self._raw > MAX_HEAD:
                self._stopped = True
                raise Reject(502, f"response head over {MAX_HEAD} bytes")

    def on_message_begin(self) -> None:
        if self.done or self.head is not None:
            self.extra = True  # bytes after the response: it stands, the connection does not
            raise _Done
        self.in_head, self._lines, self._special, self._reason = True, [], [], b""
        self._raw, self._n = 0, self._n + 1

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_headers_complete(self) -> None:
        self.in_head = False
        p = self._p
        status = p.get_status_code()
        if 100 <= status < 200:
            if status == 101:
                raise Reject(502, "the backend switched protocols (101) unasked")
            return  # interim (100 Continue): llhttp ends it here; the final head follows
        if p.get_http_version() not in _VERSIONS:
            raise Reject(502, f"the backend answered HTTP/{p.get_http_version()}")
        f = self._framing("backend", len(self._reason))
        chunked = f.chunked
        self._chunked = chunked and not self.head_only
        length = int(f.length) if f.length is not None else None
        lines = f.fields
        if f.length is not None and status not in (204, 304):
            lines += b"Content-Length: %s\r\n" % f.length
        elif chunked:
            lines += b"Transfer-Encoding: chunked\r\n"
        self.head = Response(status, self._reason, lines, length, self._chunked,
                             p.should_keep_alive())
        if self.head_only:
            self.done = True
            raise _Done  # llhttp would wait for a Content-Length body that never comes

    def on_body(self, body: bytes) -> None:
        self.body.append(b"%x\r\n%s\r\n" % (len(body), body) if self._chunked else body)

    def on_message_complete(self) -> None:
        if self.head is None:
            return  # the end of an interim 1xx
        if self._chunked:
            self.body.append(b"0\r\n\r\n")
        self.done = True
