"""Header operations and rewrites on the canonical request bytes: what the backend reads,
and that a route's values can neither split a message nor touch its framing."""

from __future__ import annotations

from knet.mesh.types import HeaderOps
from knet.mesh.wire import edit_fields, edit_request, header_map

REQ = (b"POST /old/x?q=1 HTTP/1.1\r\nHost: reviews\r\nX-Secret: s\r\nUser-Agent: t\r\n"
       b"Content-Length: 4\r\nX-Forwarded-For: 10.0.0.1\r\n\r\nbody")


def test_header_map_lower_case_first_value() -> None:
    assert header_map(REQ)["x-secret"] == "s" and header_map(REQ)["host"] == "reviews"


def test_rewrite_target_host_and_ops_keep_the_body() -> None:
    out = edit_request(REQ, target="/new/x?q=1", authority="ratings",
                       ops=HeaderOps(set=(("User-Agent", "mesh"),), add=(("x-a", "1"),),
                                     remove=("x-secret",)))
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /new/x?q=1 HTTP/1.1" and body == b"body"
    assert b"Host: ratings" in lines and b"User-Agent: mesh" in lines and b"x-a: 1" in lines
    assert not any(ln.lower().startswith(b"x-secret") for ln in lines)
    assert b"Content-Length: 4" in lines


def test_values_cannot_split_the_message_or_touch_framing() -> None:
    out = edit_request(REQ, target="/a\r\nX-Evil: 1", ops=HeaderOps(
        set=(("x-v", "1\r\nX-Evil: 2"), ("Content-Length", "999")),
        remove=("content-length", "transfer-encoding")))
    head = out.partition(b"\r\n\r\n")[0]
    assert b"\r\nX-Evil" not in head
    assert b"Content-Length: 4" in head and b"999" not in head
    assert out.endswith(b"\r\n\r\nbody")


def test_no_ops_is_the_same_bytes() -> None:
    assert edit_request(REQ, target=None, ops=HeaderOps()) is REQ
    assert edit_fields(b"A: 1\r\n", HeaderOps()) == b"A: 1\r\n"
