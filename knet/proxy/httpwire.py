"""HTTP/1.1 message framing for the L7 path: just enough parsing to proxy, no more.

`parse_head` splits a request or response head into its start line and header lines and
reads the fields a proxy must act on (length, chunking, Connection); header lines are kept
as raw bytes and forwarded untouched, minus the hop-by-hop ones. `Chunked` walks a chunked
body to find where it ends without re-encoding it: bodies are relayed byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_HEAD = 64 * 1024
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
                        b"upgrade", b"proxy-authenticate", b"proxy-authorization"})

__all__ = ["BadMessage", "Head", "parse_head", "Chunked", "MAX_HEAD"]


class BadMessage(ValueError):
    """The peer sent something that is not HTTP/1.x."""


@dataclass(slots=True)
class Head:
    start: list[bytes]                 # [method, target, version] or [version, status, reason]
    lines: list[bytes] = field(default_factory=list)  # header lines kept (raw)
    length: int | None = None          # Content-Length
    chunked: bool = False
    close: bool = False                # Connection: close (or HTTP/1.0 without keep-alive)
    size: int = 0                      # bytes of the head including the blank line

    @property
    def version(self) -> bytes:
        return self.start[2] if self.start[0][:5] != b"HTTP/" else self.start[0]


def parse_head(buf: bytes | bytearray, *, response: bool) -> Head | None:
    """The head at the start of buf, None if incomplete; BadMessage if it is not HTTP."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_HEAD:
            raise BadMessage(f"head longer than {MAX_HEAD} bytes")
        return None
    raw = bytes(buf[:end]).split(b"\r\n")
    start = raw[0].split(b" ", 2)
    if len(start) < 3 and not (response and len(start) == 2):
        raise BadMessage(f"bad start line {raw[0][:80]!r}")
    if response:
        if not start[0].startswith(b"HTTP/1.") or not start[1].isdigit():
            raise BadMessage(f"bad status line {raw[0][:80]!r}")
        if len(start) == 2:
            start.append(b"")
    elif not start[2].startswith(b"HTTP/1."):
        raise BadMessage(f"bad request line {raw[0][:80]!r}")
    head = Head(start=start, size=end + 4)
    drop: set[bytes] = set()
    keep_alive = False
    for line in raw[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise BadMessage(f"bad header line {line[:80]!r}")
        lname = name.lower()
        value = value.strip()
        if lname == b"content-length":
            if not value.isdigit():
                raise BadMessage(f"bad Content-Length {value[:20]!r}")
            head.length = int(value)
        elif lname == b"transfer-encoding":
            head.chunked = value.lower().endswith(b"chunked")
        elif lname == b"connection":
            tokens = {t.strip().lower() for t in value.split(b",")}
            head.close |= b"close" in tokens
            keep_alive |= b"keep-alive" in tokens
            drop |= tokens
        if lname not in HOP_BY_HOP:
            head.lines.append(line)
    if drop:
        head.lines = [ln for ln in head.lines if ln.partition(b":")[0].lower() not in drop]
    if head.version == b"HTTP/1.0" and not keep_alive:
        head.close = True
    if head.chunked:
        head.length = None
    return head


_SIZE, _DATA, _TRAILER = 0, 1, 2


class Chunked:
    """Finds the end of a chunked body; `feed` returns how many bytes belong to it."""

    __slots__ = ("state", "need", "line", "done")

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
