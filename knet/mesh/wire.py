"""Request and response heads as the mesh reads and edits them, on the canonical bytes the
strict HTTP/1.1 reader produced (knet/proxy/http1.py): one field per line, `Name: value`.

`header_map(data)` gives the request's fields (lower-case names, first value) for matching;
`edit_request(data, target, ops, authority)` rewrites the target, the Host and the header
fields; `edit_fields(fields, ops)` does the header operations on a response's field lines.
Values are checked for CR/LF/NUL so a route's header value can never split a message.
"""

from __future__ import annotations

from knet.mesh.types import HeaderOps

__all__ = ["edit_fields", "edit_request", "header_map", "safe"]

_BAD = (b"\r", b"\n", b"\0")
# framing and hop-by-hop fields: the proxy owns them, a route may not edit them
_PROTECTED = frozenset({b"content-length", b"transfer-encoding", b"connection", b"keep-alive",
                        b"upgrade", b"te", b"trailer"})


def safe(text: str) -> bytes:
    raw = text.encode("latin-1", "replace")
    for b in _BAD:
        raw = raw.replace(b, b"")
    return raw


def header_map(data: bytes) -> dict[str, str]:
    end = data.find(b"\r\n\r\n")
    out: dict[str, str] = {}
    for line in data[data.find(b"\r\n") + 2:end].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name:
            out.setdefault(name.decode("latin-1").lower(), value.strip().decode("latin-1"))
    return out


def edit_fields(fields: bytes, ops: HeaderOps) -> bytes:
    """Header ops on CRLF-terminated field lines: remove, then set (replace), then add."""
    if not ops:
        return fields
    drop = ({safe(n).lower() for n in ops.remove} | {safe(n).lower() for n, _ in ops.set}) \
        - _PROTECTED
    lines = [ln for ln in fields.split(b"\r\n") if ln
             and ln.partition(b":")[0].strip().lower() not in drop]
    lines += [safe(n) + b": " + safe(v) for n, v in (*ops.set, *ops.add)
              if safe(n).lower() not in _PROTECTED and safe(n) and b":" not in safe(n)]
    return b"".join(ln + b"\r\n" for ln in lines)


def edit_request(data: bytes, *, target: str | None, ops: HeaderOps,
                 authority: str | None = None) -> bytes:
    """The request with a new target (path), Host and header ops; the body untouched."""
    if target is None and not ops and authority is None:
        return data
    line_end = data.find(b"\r\n")
    head_end = data.find(b"\r\n\r\n")
    method, old_target, version = data[:line_end].split(b" ", 2)
    fields = data[line_end + 2:head_end + 2]
    if authority is not None:
        fields = edit_fields(fields, HeaderOps(set=(("Host", authority),)))
    fields = edit_fields(fields, ops)
    new_target = safe(target).replace(b" ", b"%20") if target is not None else old_target
    return b"%s %s %s\r\n%s\r\n%s" % (method, new_target, version, fields,
                                      data[head_end + 4:])
