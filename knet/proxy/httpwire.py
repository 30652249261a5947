"""HTTP/1.1 message framing for the L7 path: just enough parsing to proxy, no more.

`parse_head` splits a request or response head into its start line and header lines and
reads the fields a proxy must act on (length, chunking, Connection); header lines are kept
as raw bytes and forwarded untouched, minus the hop-by-hop ones. `Chunked` walks a chunked
body to find where it ends without re-encoding it: bodies are relayed byte for byte.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_HEAD = 64 * 1024
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
                        b"upgrade", b"proxy-authenticate", b"proxy-authorization"})
_HOP_NAMES = b"|".join(sorted(HOP_BY_HOP)).replace(b"-", b"\\-")
# a match at i in b"\\n" + fields.lower() is the line starting at fields[i]
_FIELDS = re.compile(rb"\n(content\-length|transfer\-encoding|expect|" + _HOP_NAMES
                     + rb")[ \t]*:[ \t]*([^\r]*)")
_PLAIN_TOKENS = frozenset({b"close", b"keep-alive", b""})

__all__ = ["MAX_HEAD", "BadMessage", "Chunked", "Head", "parse_head"]


class BadMessage(ValueError):
    """The peer sent something that is not HTTP/1.x."""


@dataclass(slots=True)
class Head:
    start: list[bytes]                 # [method, target, version] or [version, status, reason]
    fields: bytes = b""                # header lines to forward (raw, CRLF-joined, no CRLF end)
    length: int | None = None          # Content-Length
    chunked: bool = False
    close: bool = False                # Connection: close (or HTTP/1.0 without keep-alive)
    expect_continue: bool = False      # Expect: 100-continue (taken out of fields)
    size: int = 0                      # bytes of the head including the blank line

    @property
    def version(self) -> bytes:
        return self.start[2] if self.start[0][:5] != b"HTTP/" else self.start[0]


def _start_line(line: bytes, *, response: bool) -> list[bytes]:
    start = line.split(b" ", 2)
    if response:
        if len(start) < 2 or not start[0].startswith(b"HTTP/1.") or not start[1].isdigit():
            raise BadMessage(f"bad status line {line[:80]!r}")
        if len(start) == 2:
            start.append(b"")
    elif len(start) != 3 or not start[2].startswith(b"HTTP/1.") or not start[0].isalpha():
        raise BadMessage(f"bad request line {line[:80]!r}")
    return start


def parse_head(buf: bytes | bytearray, *, response: bool) -> Head | None:
    """The head at the start of buf, None if incomplete; BadMessage if it is not HTTP.

    Fast path: one regex pass over the lower-cased header block finds the few fields a
    proxy acts on; the block is forwarded as slices around the hop-by-hop lines, never
    split into lines unless Connection names extra headers to drop."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_HEAD:
            raise BadMessage(f"head longer than {MAX_HEAD} bytes")
        return None
    raw = bytes(buf[:end])
    nl = raw.find(b"\r\n")
    head = Head(start=_start_line(raw if nl < 0 else raw[:nl], response=response), size=end + 4)
    fields = b"" if nl < 0 else raw[nl + 2:]
    cuts: list[int] = []
    tokens: set[bytes] = set()
    te = False
    for m in _FIELDS.finditer(b"\n" + fields.lower()):
        name, value = m.group(1), m.group(2).rstrip()
        if name == b"content-length":
            if not value.isdigit():
                raise BadMessage(f"bad Content-Length {value[:20]!r}")
            head.length = int(value)
        elif name == b"transfer-encoding":
            te, head.chunked = True, value.endswith(b"chunked")
        elif name == b"expect":  # the proxy answers 100 Continue itself: not forwarded
            head.expect_continue = value == b"100-continue"
            cuts.append(m.start())
        else:
            cuts.append(m.start())
            if name == b"connection":
                tokens |= {t.strip() for t in value.split(b",")}
    if te:
        if head.length is not None and not response:
            raise BadMessage("both Content-Length and Transfer-Encoding (request smuggling?)")
        head.length = None
    head.close = b"close" in tokens or (head.version == b"HTTP/1.0"
                                        and b"keep-alive" not in tokens)
    if not cuts:
        head.fields = fields
    elif tokens <= _PLAIN_TOKENS:
        head.fields = _cut_lines(fields, cuts)
    else:  # Connection names more headers to drop: the slow, line by line way
        head.fields = _without(fields, HOP_BY_HOP | tokens | {b"expect"})
    return head


def _cut_lines(fields: bytes, starts: list[int]) -> bytes:
    """fields without the lines starting at `starts` (offsets into fields)."""
    out, pos = [], 0
    for start in starts:
        end = fields.find(b"\r\n", start)
        out.append(fields[pos:start])
        pos = len(fields) if end < 0 else end + 2
    out.append(fields[pos:])
    kept = b"".join(out)
    return kept[:-2] if kept.endswith(b"\r\n") else kept


def _without(fields: bytes, drop: frozenset[bytes] | set[bytes]) -> bytes:
    kept = []
    for line in fields.split(b"\r\n"):
        name, sep, _ = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise BadMessage(f"bad header line {line[:80]!r}")
        if name.lower() not in drop:
            kept.append(line)
    return b"\r\n".join(kept)


_SIZE, _DATA, _TRAILER = 0, 1, 2


class Chunked:
    """Finds the end of a chunked body; `feed` returns how many bytes belong to it."""

    __slots__ = ("done", "line", "need", "state")

    def __init__(self) -> None:
        self.state = _SIZE
        self.need = 0
        self.line = b""
        self.done = False

    def feed(self, data: bytes | memoryview) -> int:
        i, n = 0, len(data)
        while i < n and not self.done:
            if self.state == _DATA:
                take = min(self.need, n - i)
                i += take
                self.need -= take
                if self.need == 0:
                    self.state = _SIZE
                continue
            j = bytes(data[i:i + 4096]).find(b"\n")
            if j < 0:
                self.line += bytes(data[i:])
                if len(self.line) > 4096:
                    raise BadMessage("chunk size line too long")
                return n
            line = self.line + bytes(data[i:i + j])
            self.line = b""
            i += j + 1
            if self.state == _TRAILER:
                self.done = not line.strip()
                continue
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BadMessage(f"bad chunk size {line[:20]!r}") from None
            if size == 0:
                self.state = _TRAILER
            else:
                self.need, self.state = size + 2, _DATA
        return i
