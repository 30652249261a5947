"""DNS wire format for the server: a fast question parser and pre-built answers.

The hot path never builds a dnspython message: `parse` reads the header and the one
question of an ordinary query by hand, `prebuild` renders the zone's answer for a
(lower-case name, type) once with dnspython, and `assemble` splices a response together from
the query's own id, RD bit and question bytes plus the cached sections. Names in the cached
sections are compressed against the question at offset 12, which has the same length for
every query with the same key, so the pointers stay valid whatever the query's letter case.
Anything unusual (several questions, extra records, compression in the question) returns
None from `parse` and goes through dnspython in the server.
"""

from __future__ import annotations

from dataclasses import dataclass

import dns.flags
import dns.message
import dns.name
import dns.rdata
import dns.rrset
from dns.rcode import Rcode
from dns.rdataclass import RdataClass
from dns.rdatatype import RdataType as T

from knet.dns.records import Answer, Record

# our OPT record: root owner, type 41, payload 1232, extended rcode 0, version 0, no flags
OPT_RR = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"
MAX_NAME = 255
_ORDINARY = b"\x00\x01\x00\x00\x00\x00"  # qdcount 1, ancount 0, nscount 0


@dataclass(frozen=True, slots=True)
class Question:
    """An ordinary query as `parse` saw it: `name` is the question name in wire form, lower
    case; `end` the offset after the question; `edns` the client's UDP payload (0: none)."""
    name: bytes
    qtype: int
    end: int
    edns: int


@dataclass(frozen=True, slots=True)
class Prebuilt:
    """A rendered answer: 10 header bytes after the id per (RD, EDNS) variant, the sections
    after the question, and what the query log shows."""
    heads: tuple[bytes, bytes, bytes, bytes]  # index: rd | (edns << 1)
    tail: bytes
    rcode: Rcode
    summary: str
    outside: bool


def parse(data: bytes) -> Question | None:
    """The question of an ordinary QUERY, or None when the packet needs the full parser."""
    if len(data) < 17 or data[2] & 0xF8 or data[4:10] != _ORDINARY:
        return None
    arcount = data[10] << 8 | data[11]
    i, n = 12, len(data)
    while i < n:
        length = data[i]
        if length == 0:
            break
        if length > 63:
            return None
        i += length + 1
    end = i + 5
    if end > n or i - 11 > MAX_NAME or data[end - 2:end] != b"\x00\x01":
        return None
    edns = 0
    if arcount == 1:
        edns = _opt_payload(data, end)
        if edns == 0:
            return None
    elif arcount or end != n:
        return None
    return Question(data[12:i + 1].lower(), data[i + 1] << 8 | data[i + 2], end, edns)


def _opt_payload(data: bytes, at: int) -> int:
    """The UDP payload size of an OPT record at `at` that ends the packet (options such as
    cookies are ignored, as RFC 7873 allows); 0 if it is anything else or EDNS version > 0."""
    if len(data) < at + 11 or data[at] != 0 or data[at + 1:at + 3] != b"\x00\x29":
        return 0
    if data[at + 6] != 0 or at + 11 + (data[at + 9] << 8 | data[at + 10]) != len(data):
        return 0
    return max(512, data[at + 3] << 8 | data[at + 4])


def fill(msg: dns.message.Message, answer: Answer) -> None:
    """Put an Answer's sections and rcode into a dnspython message."""
    msg.set_rcode(answer.rcode)
    for section, records in ((msg.answer, answer.answer), (msg.authority, answer.authority),
                             (msg.additional, answer.additional)):
        for rec in records:
            rrset = msg.find_rrset(section, dns.name.from_text(rec.name), RdataClass.IN,
                                   rec.rtype, create=True)
            rrset.add(dns.rdata.from_text(RdataClass.IN, rec.rtype, rec.data), rec.ttl)


def summary(records: tuple[Record, ...]) -> str:
    return ", ".join(f"{r.rtype.name} {r.data}" for r in records)


def prebuild(qname: bytes, qtype: int, answer: Answer) -> Prebuilt:
    """Render `answer` to the question (qname, qtype) once; see `assemble`."""
    msg = dns.message.Message(id=0)
    msg.flags = dns.flags.QR | dns.flags.AA | dns.flags.RA
    msg.question = [dns.rrset.RRset(dns.name.from_wire(qname, 0)[0], RdataClass.IN,
                                    T.make(qtype))]
    fill(msg, answer)
    wire = msg.to_wire()
    end = 12 + len(qname) + 4
    flags, counts = wire[2:4], wire[6:12]
    ar = counts[4] << 8 | counts[5]
    counts_edns = counts[:4] + (ar + 1).to_bytes(2, "big")
    heads = tuple(bytes((flags[0] | rd, flags[1])) + b"\x00\x01" + (counts_edns if edns else counts)
                  for edns in (0, 1) for rd in (0, 1))
    return Prebuilt(heads, wire[end:], answer.rcode,  # type: ignore[arg-type]
                    summary(answer.answer), answer.outside)


def assemble(p: Prebuilt, data: bytes, q: Question, limit: int) -> bytes:
    """The response to query `data` from a Prebuilt; truncated (TC, no records) if it would
    exceed `limit` bytes, so that the client retries over TCP."""
    rd, question = data[2] & 1, data[12:q.end]
    if q.edns:
        out = b"".join((data[:2], p.heads[2 | rd], question, p.tail, OPT_RR))
    else:
        out = b"".join((data[:2], p.heads[rd], question, p.tail))
    if len(out) <= limit:
        return out
    head = bytes((0x86 | rd, p.heads[0][1] & 0xF0 | p.rcode)) + _ORDINARY
    return data[:2] + head + (b"\x00\x01" if q.edns else b"\x00\x00") + question + (
        OPT_RR if q.edns else b"")


def error(data: bytes, rcode: Rcode) -> bytes | None:
    """A header-only error response (FORMERR for garbage), or None when `data` is too short to
    answer or is itself a response (never answer those: that is how loops start)."""
    if len(data) < 12 or data[2] & 0x80:
        return None
    return data[:2] + bytes((0x80 | data[2] & 0x79, 0x80 | rcode)) + bytes(8)


def qname_text(qname: bytes) -> str:
    """Wire-form name -> text, for the query log (read rarely, so done lazily)."""
    try:
        return dns.name.from_wire(qname, 0)[0].to_text()
    except Exception:  # noqa: BLE001 - a log line must never fail
        return repr(qname)
