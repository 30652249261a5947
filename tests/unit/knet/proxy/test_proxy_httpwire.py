"""HTTP/1.1 framing for the L7 path: heads, hop-by-hop removal, chunked ends, bad input."""

from __future__ import annotations

import pytest

from knet.proxy.httpwire import MAX_HEAD, BadMessage, Chunked, parse_head


def test_incomplete_head_is_none() -> None:
    assert parse_head(b"GET / HTTP/1.1\r\nHost: a\r\n", response=False) is None


def test_request_head_fields_and_size() -> None:
    raw = b"POST /x?y=1 HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\n\r\nhello"
    h = parse_head(raw, response=False)
    assert h is not None
    assert h.start == [b"POST", b"/x?y=1", b"HTTP/1.1"]
    assert (h.length, h.chunked, h.close, h.size) == (5, False, False, len(raw) - 5)
    assert h.fields == b"Host: web\r\nContent-Length: 5"


def test_hop_by_hop_headers_removed_wherever_they_are() -> None:
    raw = (b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nServer: x\r\nKeep-Alive: timeout=5"
           b"\r\nUpgrade: h2c\r\nContent-Length: 0\r\nTE: trailers\r\n\r\n")
    h = parse_head(raw, response=True)
    assert h is not None and h.fields == b"Server: x\r\nContent-Length: 0"
    assert not h.close


def test_headers_named_by_connection_are_dropped_too() -> None:
    raw = b"GET / HTTP/1.1\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\nHost: a\r\n\r\n"
    h = parse_head(raw, response=False)
    assert h is not None and h.fields == b"Host: a" and h.close


def test_similar_names_are_not_hop_by_hop() -> None:
    raw = b"GET / HTTP/1.1\r\nTest: 1\r\nConnection-Id: 7\r\nX-Upgrade: no\r\n\r\n"
    h = parse_head(raw, response=False)
    assert h is not None and h.fields == b"Test: 1\r\nConnection-Id: 7\r\nX-Upgrade: no"


def test_http10_closes_unless_keep_alive() -> None:
    h10 = parse_head(b"GET / HTTP/1.0\r\n\r\n", response=False)
    h10ka = parse_head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", response=False)
    assert h10 is not None and h10.close and h10.fields == b""
    assert h10ka is not None and not h10ka.close


def test_chunked_wins_over_length_in_responses() -> None:
    h = parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n",
                   response=True)
    assert h is not None and h.chunked and h.length is None


@pytest.mark.parametrize("raw", [
    b"\x16\x03\x01\x02\x00garbage\r\n\r\n",
    b"GET /\r\n\r\n",
    b"GET / SPDY/3\r\n\r\n",
    b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    b"GET / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
])
def test_bad_requests(raw: bytes) -> None:
    with pytest.raises(BadMessage):
        parse_head(raw, response=False)


def test_bad_status_line() -> None:
    with pytest.raises(BadMessage):
        parse_head(b"HTTP/1.1 OK fine\r\n\r\n", response=True)


def test_status_line_without_reason() -> None:
    h = parse_head(b"HTTP/1.1 204\r\n\r\n", response=True)
    assert h is not None and h.start == [b"HTTP/1.1", b"204", b""]


def test_huge_head_rejected() -> None:
    with pytest.raises(BadMessage, match="longer than"):
        parse_head(b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD, response=False)


BODY = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"


def test_chunked_end_found_in_one_piece() -> None:
    c = Chunked()
    assert c.feed(BODY + b"NEXT") == len(BODY) and c.done


@pytest.mark.parametrize("step", [1, 2, 3, 7])
def test_chunked_end_found_across_any_split(step: int) -> None:
    c = Chunked()
    used = 0
    data = BODY + b"GET / HTTP/1.1"
    for i in range(0, len(data), step):
        if c.done:
            break
        used += c.feed(data[i:i + step])
    assert c.done and used == len(BODY)


def test_chunked_bad_size() -> None:
    with pytest.raises(BadMessage):
        Chunked().feed(b"zz\r\n")


def test_expect_continue_is_seen_and_not_forwarded() -> None:
    h = parse_head(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
                   response=False)
    assert h is not None and h.expect_continue and h.fields == b"Content-Length: 3"
