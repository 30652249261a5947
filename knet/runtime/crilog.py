"""CRI log lines: `<RFC3339Nano UTC> <stdout|stderr> <F|P> <message>\\n`, as the kubelet reads.

The shim frames a container's output into these lines (a `P` line is a fragment of a longer
line, continued by the next line of the same stream, as containerd writes them); the reader
turns them back into what `kubectl logs` prints. Pure and stdlib-only (only `time`): the
shim imports it at start-up, where every import costs latency.
"""

from __future__ import annotations

import time

MAX_LINE = 16 * 1024


def format_time(ns: int) -> bytes:
    """RFC 3339 with nanoseconds in UTC: b'2026-11-22T03:04:05.123456789Z'."""
    sec, frac = divmod(ns, 1_000_000_000)
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z").encode()


def cri_line(ts: bytes, stream: bytes, partial: bool, msg: bytes) -> bytes:
    return b"%s %s %s %s\n" % (ts, stream, b"P" if partial else b"F", msg)


class CriLine:
    """One parsed line (a plain class: `typing.NamedTuple` would cost the shim ~5 ms)."""

    __slots__ = ("msg", "partial", "stream", "ts")

    def __init__(self, ts: bytes, stream: bytes, partial: bool, msg: bytes) -> None:
        self.ts, self.stream, self.partial, self.msg = ts, stream, partial, msg

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CriLine) and (self.ts, self.stream, self.partial, self.msg) \
            == (other.ts, other.stream, other.partial, other.msg)

    def __repr__(self) -> str:
        return f"CriLine({self.ts!r}, {self.stream!r}, {self.partial}, {self.msg!r})"


def parse_line(line: bytes) -> CriLine | None:
    """One CRI line without its newline; None if it is not one (a torn or foreign line)."""
    parts = line.split(b" ", 3)
    if len(parts) < 3 or parts[1] not in (b"stdout", b"stderr") or parts[2] not in (b"F", b"P"):
        return None
    return CriLine(parts[0], parts[1], parts[2] == b"P", parts[3] if len(parts) == 4 else b"")


class Framer:
    """Cuts one stream's bytes into CRI lines. Text without a newline is held back until
    the newline comes, the line reaches MAX_LINE, or `flush` is called (idle or EOF)."""

    def __init__(self, stream: bytes, *, max_line: int = MAX_LINE) -> None:
        self.stream = stream
        self.max_line = max_line
        self.pending = b""

    def feed(self, data: bytes, now_ns: int) -> bytes:
        ts = format_time(now_ns)
        buf = self.pending + data
        out = []
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0 or nl - start > self.max_line:
                if len(buf) - start >= self.max_line:
                    out.append(cri_line(ts, self.stream, True, buf[start:start + self.max_line]))
                    start += self.max_line
                    continue
                break
            out.append(cri_line(ts, self.stream, False, buf[start:nl]))
            start = nl + 1
        self.pending = buf[start:]
        return b"".join(out)

    def flush(self, now_ns: int, *, final: bool) -> bytes:
        """The held-back text: a `P` fragment while the stream goes on, `F` at its end."""
        if not self.pending:
            return b""
        data, self.pending = self.pending, b""
        return cri_line(format_time(now_ns), self.stream, not final, data)


def render(lines: list[CriLine], *, timestamps: bool) -> tuple[bytes, list[CriLine]]:
    """What `kubectl logs` prints for these lines: fragments joined, each logical line
    ended by a newline, prefixed by the time of its first fragment with timestamps.
    Returns the output and the trailing fragments that still wait for their `F` line."""
    out: list[bytes] = []
    open_: dict[bytes, list[CriLine]] = {}
    for ln in lines:
        frags = open_.setdefault(ln.stream, [])
        frags.append(ln)
        if ln.partial:
            continue
        text = b"".join(f.msg for f in frags)
        out.append((frags[0].ts + b" " if timestamps else b"") + text + b"\n")
        del open_[ln.stream]
    rest = sorted((f for frags in open_.values() for f in frags), key=lambda f: f.ts)
    return b"".join(out), rest
