"""CRI log lines: the format the shim writes and the kubelet reads back."""

from __future__ import annotations

import re

from knet.runtime.crilog import CriLine, Framer, format_time, parse_line, render

NS = 1_795_316_645_123_456_789  # 2026-11-22T03:04:05.123456789Z


def test_time_is_rfc3339_nano_utc() -> None:
    assert format_time(NS) == b"2026-11-22T03:04:05.123456789Z"
    assert format_time(1_795_316_645_000_000_001).endswith(b":05.000000001Z")


def test_full_lines_are_framed_with_time_stream_and_F() -> None:
    fr = Framer(b"stdout")
    out = fr.feed(b"hello\nworld\n", NS)
    assert out == (b"2026-11-22T03:04:05.123456789Z stdout F hello\n"
                   b"2026-11-22T03:04:05.123456789Z stdout F world\n")


def test_text_without_newline_waits_then_flushes_as_partial() -> None:
    fr = Framer(b"stderr")
    assert fr.feed(b"abc", NS) == b""
    assert fr.feed(b"def\nxy", NS) == b"2026-11-22T03:04:05.123456789Z stderr F abcdef\n"
    assert fr.flush(NS, final=False).endswith(b" stderr P xy\n")
    assert fr.flush(NS, final=True) == b""


def test_end_of_stream_closes_the_last_line_with_F() -> None:
    fr = Framer(b"stdout")
    fr.feed(b"no newline at end", NS)
    assert fr.flush(NS, final=True).endswith(b" stdout F no newline at end\n")


def test_long_lines_are_split_into_partials() -> None:
    fr = Framer(b"stdout", max_line=4)
    out = fr.feed(b"abcdefghij\n", NS).splitlines()
    assert [ln.split(b" ", 2)[2] for ln in out] == [b"P abcd", b"P efgh", b"F ij"]


def test_parse_roundtrip_and_garbage() -> None:
    ln = parse_line(b"2026-11-22T03:04:05.1Z stderr P a b c")
    assert ln == CriLine(b"2026-11-22T03:04:05.1Z", b"stderr", True, b"a b c")
    assert parse_line(b"ts stdout F") == CriLine(b"ts", b"stdout", False, b"")
    assert parse_line(b"not a cri line") is None
    assert parse_line(b"") is None


def test_render_joins_partials_and_prefixes_timestamps() -> None:
    lines = [CriLine(b"t1", b"stdout", True, b"hel"), CriLine(b"t2", b"stderr", False, b"oops"),
             CriLine(b"t3", b"stdout", False, b"lo"), CriLine(b"t4", b"stdout", True, b"tail")]
    out, rest = render(lines, timestamps=False)
    assert out == b"oops\nhello\n"
    assert rest == [CriLine(b"t4", b"stdout", True, b"tail")]
    out, _ = render(lines, timestamps=True)
    assert out == b"t2 oops\nt1 hello\n"


def test_message_keeps_spaces_and_bytes() -> None:
    fr = Framer(b"stdout")
    raw = b"  two  spaces \xff\xfe binary\n"
    line = fr.feed(raw, NS)
    assert re.match(rb"^\S+ stdout F ", line)
    assert parse_line(line.rstrip(b"\n")).msg == raw.rstrip(b"\n")
