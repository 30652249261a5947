"""The part of SPDY/3.1 that `kubectl port-forward` speaks, as a pure codec: no sockets.

kubectl 1.32 tunnels SPDY inside a WebSocket (subprotocol `SPDY/3.1+portforward.k8s.io`):
the binary messages concatenate to a SPDY byte stream, cut anywhere. `Parser.feed` takes
that stream and yields whole frames. The client opens streams (SYN_STREAM, odd ids) whose
header block is zlib-compressed with the SPDY/3 dictionary (one zlib stream per direction for
the whole connection); we answer SYN_REPLY, move bytes in DATA frames (FIN ends a direction),
echo PINGs and ignore SETTINGS/WINDOW_UPDATE, as the Go spdystream library does. Our header
blocks are compressed without a dictionary, which the Go zlib reader accepts.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = (
    1, 2, 3, 4, 6, 7, 8, 9)
FLAG_FIN = 0x01
RST_PROTOCOL_ERROR, RST_CANCEL = 1, 5
MAX_FRAME = 1 << 24


def _dictionary() -> bytes:
    """The SPDY/3 header compression dictionary (draft 3, section 2.6.10.1): length-prefixed
    common header names and values, then a run of status codes, dates and media types."""
    words = ("options head post put delete trace accept accept-charset accept-encoding "  # noqa: SIM905
             "accept-language accept-ranges age allow authorization cache-control connection "
             "content-base content-encoding content-language content-length content-location "
             "content-md5 content-range content-type date etag expect expires from host "
             "if-match if-modified-since if-none-match if-range if-unmodified-since "
             "last-modified location max-forwards pragma proxy-authenticate "
             "proxy-authorization range referer retry-after server te trailer "
             "transfer-encoding upgrade user-agent vary via warning www-authenticate method "
             "get status").split()
    words += ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive",
              "origin"]
    head = b"".join(struct.pack(">I", len(w)) + w.encode() for w in words)
    tail = ("100101201202205206300302303304305306307402405406407408409410411412413414415416"
            "417502504505203 Non-Authoritative Information204 No Content301 Moved "
            "Permanently400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 "
            "Internal Server Error501 Not Implemented503 Service UnavailableJan Feb Mar Apr "
            "May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, "
            "GMTchunked,text/html,image/png,image/jpg,image/gif,application/xml,"
            "application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,"
            "deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
    return head + tail.encode()


DICTIONARY = _dictionary()


class SpdyError(ValueError):
    """A byte stream that is not SPDY/3.1 as kubectl writes it."""


@dataclass
class Frame:
    """A control frame (`type` > 0) or a DATA frame (`type` 0, `stream` and `data`)."""

    type: int
    flags: int
    stream: int = 0
    data: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    value: int = 0          # PING id, RST/GOAWAY status

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


class Parser:
    """Bytes in (any cut), frames out; one header decompressor for the connection."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)

    def feed(self, data: bytes) -> Iterator[Frame]:
        self._buf += data
        while len(self._buf) >= 8:
            length = int.from_bytes(self._buf[5:8], "big")
            if len(self._buf) < 8 + length:
                return
            head, body = bytes(self._buf[:8]), bytes(self._buf[8:8 + length])
            del self._buf[:8 + length]
            yield self._frame(head, body)

    def _frame(self, head: bytes, body: bytes) -> Frame:
        flags = head[4]
        if not head[0] & 0x80:
            return Frame(0, flags, int.from_bytes(head[:4], "big") & 0x7FFFFFFF, body)
        version = int.from_bytes(head[:2], "big") & 0x7FFF
        kind = int.from_bytes(head[2:4], "big")
        if version != 3:
            raise SpdyError(f"SPDY version {version} is not supported; kubectl speaks 3.1")
        if kind == SYN_STREAM:
            return Frame(kind, flags, _u31(body, 0), headers=self._headers(body[10:]))
        if kind in (SYN_REPLY, HEADERS):
            return Frame(kind, flags, _u31(body, 0), headers=self._headers(body[4:]))
        if kind in (RST_STREAM, WINDOW_UPDATE):
            return Frame(kind, flags, _u31(body, 0), value=_u31(body, 4))
        if kind == PING:
            return Frame(kind, flags, value=_u31(body, 0, mask=0xFFFFFFFF))
        if kind == GOAWAY:
            return Frame(kind, flags, _u31(body, 0), value=_u31(body, 4))
        return Frame(kind, flags, data=body)       # SETTINGS and unknown types: ignored

    def _headers(self, block: bytes) -> dict[str, str]:
        try:
            raw = self._inflate.decompress(block)
        except zlib.error as exc:
            raise SpdyError(f"header block does not decompress: {exc}") from None
        return decode_headers(raw)


def _u31(body: bytes, at: int, mask: int = 0x7FFFFFFF) -> int:
    if len(body) < at + 4:
        raise SpdyError(f"control frame too short ({len(body)} bytes)")
    return int.from_bytes(body[at:at + 4], "big") & mask


def decode_headers(raw: bytes) -> dict[str, str]:
    """count, then (len, name, len, value) pairs; several values are NUL-separated."""
    try:
        (count,), at, out = struct.unpack_from(">I", raw), 4, {}
        for _ in range(count):
            (n,) = struct.unpack_from(">I", raw, at)
            name = raw[at + 4:at + 4 + n].decode()
            at += 4 + n
            (n,) = struct.unpack_from(">I", raw, at)
            out[name.lower()] = raw[at + 4:at + 4 + n].split(b"\0")[0].decode()
            at += 4 + n
    except (struct.error, UnicodeDecodeError) as exc:
        raise SpdyError(f"malformed header block: {exc}") from None
    return out


def encode_headers(headers: dict[str, str]) -> bytes:
    out = [struct.pack(">I", len(headers))]
    for k, v in headers.items():
        out += [struct.pack(">I", len(k)), k.encode(), struct.pack(">I", len(v)), v.encode()]
    return b"".join(out)


class Writer:
    """Frames out; one header compressor for the connection."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj()

    def _control(self, kind: int, flags: int, body: bytes) -> bytes:
        return struct.pack(">HHI", 0x8003, kind, (flags << 24) | len(body)) + body

    def syn_reply(self, stream: int, headers: dict[str, str] | None = None, *,
                  fin: bool = False) -> bytes:
        block = self._deflate.compress(encode_headers(headers or {}))
        block += self._deflate.flush(zlib.Z_SYNC_FLUSH)
        return self._control(SYN_REPLY, FLAG_FIN if fin else 0,
                             struct.pack(">I", stream) + block)

    def rst(self, stream: int, status: int = RST_CANCEL) -> bytes:
        return self._control(RST_STREAM, 0, struct.pack(">II", stream, status))

    def ping(self, ping_id: int) -> bytes:
        return self._control(PING, 0, struct.pack(">I", ping_id))

    def goaway(self, last: int) -> bytes:
        return self._control(GOAWAY, 0, struct.pack(">II", last, 0))

    @staticmethod
    def data(stream: int, payload: bytes, *, fin: bool = False) -> bytes:
        if len(payload) >= MAX_FRAME:
            raise SpdyError(f"DATA frame of {len(payload)} bytes is too long")
        return struct.pack(">II", stream, ((FLAG_FIN if fin else 0) << 24) | len(payload)) + payload


class ClientWriter(Writer):
    """The client's side (SYN_STREAM with a dictionary-compressed header block): what kubectl
    sends, for tests."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(zdict=DICTIONARY)

    def syn_stream(self, stream: int, headers: dict[str, str], *, fin: bool = False) -> bytes:
        block = self._deflate.compress(encode_headers(headers))
        block += self._deflate.flush(zlib.Z_SYNC_FLUSH)
        return self._control(SYN_STREAM, FLAG_FIN if fin else 0,
                             struct.pack(">IIH", stream, 0, 0) + block)
