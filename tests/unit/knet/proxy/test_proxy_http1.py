"""The strict HTTP/1.1 readers of the L7 path, fed bytes directly: what is forwarded (canonical
framing, hop-by-hop headers out), what is rejected and with which status."""

from __future__ import annotations

import pytest

from knet.proxy.http1 import MAX_HEAD, Reject, RequestReader, ResponseReader

XFF = b"X-Forwarded-For: 10.0.0.1\r\n"


def read(*chunks: bytes, max_body: int = 1 << 20) -> RequestReader:
    r = RequestReader(XFF, max_body=max_body)
    for c in chunks:
        r.feed(c)
    return r


def test_request_forwarded_in_canonical_form() -> None:
    r = read(b"POST /x?y=1 HTTP/1.1\r\nHost: web\r\nX-A:  padded \t\r\nContent-Length: 5\r\n"
             b"\r\nhello")
    assert r.error is None and not r.reading
    [req] = r.ready
    assert (req.method, req.target, req.keep, req.head_only) == (b"POST", b"/x?y=1", True, False)
    assert req.data == (b"POST /x?y=1 HTTP/1.1\r\nHost: web\r\nX-A: padded \t\r\n"
                        b"Content-Length: 5\r\n" + XFF + b"\r\nhello")


def test_chunked_request_goes_on_with_content_length_and_no_trailers() -> None:
    r = read(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
    [req] = r.ready
    assert req.data == (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n" + XFF +
                        b"\r\nhello world")


def test_byte_at_a_time_and_pipelined() -> None:
    raw = (b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nHEAD /2 HTTP/1.1\r\nHost: a\r\n\r\n"
           b"POST /3 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
    r = read(*[raw[i:i + 1] for i in range(len(raw))])
    assert [(q.method, q.target, q.head_only) for q in r.ready] == [
        (b"GET", b"/1", False), (b"HEAD", b"/2", True), (b"POST", b"/3", False)]
    assert r.ready[2].data.endswith(b"\r\n\r\nabc")
    assert read(raw).ready == r.ready


def test_hop_by_hop_and_connection_named_headers_dropped() -> None:
    r = read(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n"
             b"Keep-Alive: 5\r\nTE: trailers\r\nUpgrade: h2c\r\nProxy-Connection: x\r\n"
             b"Expect: 100-continue\r\nConnection-Id: 7\r\nX-Upgrade: no\r\n\r\n")
    [req] = r.ready
    assert req.data == (b"GET / HTTP/1.1\r\nHost: a\r\nConnection-Id: 7\r\nX-Upgrade: no\r\n"
                        + XFF + b"\r\n")


def test_http10_without_host_gets_one() -> None:
    r = RequestReader(XFF, max_body=100, host=b"10.96.0.5:80")
    r.feed(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\nHost: a\r\n\r\n")
    assert [q.data for q in r.ready] == [
        b"GET / HTTP/1.1\r\nHost: 10.96.0.5:80\r\n" + XFF + b"\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n" + XFF + b"\r\n"]


def test_nothing_read_after_connection_close() -> None:
    r = read(b"GET / HTTP/1.0\r\n\r\nGET /2 HTTP/1.0\r\n\r\n")
    assert len(r.ready) == 1 and r.error is not None and r.error.status == 400


def test_keep_alive_per_version_and_connection() -> None:
    assert not read(b"GET / HTTP/1.0\r\n\r\n").ready[0].keep
    assert read(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").ready[0].keep
    assert not read(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").ready[0].keep
    assert read(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").ready[0].keep


def test_error_after_valid_requests_keeps_them() -> None:
    r = read(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost : a\r\n\r\n")
    assert len(r.ready) == 1 and r.error is not None and r.error.status == 400
    r.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")  # nothing is read after an error
    assert len(r.ready) == 1


def test_expect_continue_only_for_a_body() -> None:
    r = read(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
    assert r.expect and r.reading and not r.in_head and not r.ready
    r.feed(b"abc")
    assert not r.expect and len(r.ready) == 1
    assert not read(b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n").expect


def test_upgrade_without_body_is_a_plain_request() -> None:
    r = read(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
             b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
    assert r.error is None and [q.target for q in r.ready] == [b"/ws", b"/next"]
    assert b"pgrade" not in r.ready[0].data


def test_head_limit_counts_a_slowly_growing_head() -> None:
    r = read(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: ", *[b"v" * 8192] * 9)
    assert r.error is not None and r.error.status == 431
    ok = read(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: ", *[b"v" * 4096] * 8, b"\r\n\r\n")
    assert ok.error is None and len(ok.ready) == 1
    assert MAX_HEAD == 64 * 1024


def test_body_limit_counts_chunks() -> None:
    r = read(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
             b"400\r\n" + b"x" * 1024 + b"\r\n", b"400\r\n" + b"x" * 1024 + b"\r\n",
             max_body=1500)
    assert r.error is not None and r.error.status == 413


# responses


def respond(*chunks: bytes, head_only: bool = False) -> ResponseReader:
    r = ResponseReader()
    r.head_only = head_only
    for c in chunks:
        r.feed(c)
    return r


def test_response_content_length_body_as_is() -> None:
    r = respond(b"HTTP/1.1 200 OK\r\nServer: x\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\n"
                b"Content-Length: 5\r\n\r\nhel", b"lo")
    assert r.head is not None and r.done and not r.extra and r.usable
    assert (r.head.status, r.head.reason, r.head.length, r.head.chunked, r.head.keep) == (
        200, b"OK", 5, False, True)
    assert r.head.fields == b"Server: x\r\nContent-Length: 5\r\n"
    assert b"".join(r.body) == b"hello"


def test_response_chunked_is_rechunked_same_payload() -> None:
    r = respond(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
                b"2\r\nde\r\n0\r\nX-T: 1\r\n\r\n")
    assert r.head is not None and r.head.chunked and r.done
    assert r.head.fields == b"Transfer-Encoding: chunked\r\n"
    assert b"".join(r.body) == b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"


def test_interim_100_skipped_and_no_body_statuses() -> None:
    r = respond(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
    assert r.head is not None and r.head.status == 204 and r.done and not r.body
    r = respond(b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n")
    assert r.head is not None and r.done and r.head.fields == b"ETag: x\r\n"


def test_head_response_has_no_body_and_is_not_reused() -> None:
    r = respond(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n", head_only=True)
    assert r.head is not None and r.done and not r.body and not r.usable
    assert r.head.fields == b"Content-Length: 500\r\n"


def test_response_until_close_and_bytes_after_a_response() -> None:
    r = respond(b"HTTP/1.1 200 OK\r\n\r\nsome")
    assert r.head is not None and not r.done and not r.head.keep and r.head.length is None
    r = respond(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n")
    assert r.done and r.extra


def test_keep_alive_reuse_resets() -> None:
    r = respond(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na")
    r.reset()
    r.feed(b"HTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\nb")
    assert r.head is not None and r.head.status == 404 and r.body == [b"b"] and r.done


@pytest.mark.parametrize("raw", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n",
    b"HTTP/1.1 200 OK\r\nX-A: " + b"v" * 70_000 + b"\r\n\r\n",
    b"HTTP/1.0 200 OK\nContent-Length: 0\n\n",
])
def test_bad_responses_are_502(raw: bytes) -> None:
    with pytest.raises(Reject) as e:
        respond(raw)
    assert e.value.status == 502
