"""Small pieces every store backend shares: prefix ranges and the errors of the contract.

Keeping the messages here makes all three backends say the same thing for the same fault:
the key, what was expected, and what to do about it.
"""

from __future__ import annotations

from control.errors import AlreadyExists, Conflict, Gone, NotFound
from control.store.base import KV


def prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with prefix (None: no bound)."""
    chars = list(prefix)
    while chars:
        last = ord(chars[-1])
        if last < 0x10FFFF:
            chars[-1] = chr(last + 1)
            return "".join(chars)
        chars.pop()
    return None


def already_exists(key: str) -> AlreadyExists:
    return AlreadyExists(f"key {key!r} already exists; update it or delete it first")


def check_current(key: str, old: KV | None, expected: int | None, verb: str) -> KV:
    """The current KV if an update/delete of key may go ahead, else NotFound or Conflict."""
    if old is None:
        raise NotFound(f"key {key!r} not found; cannot {verb} it (create it first)")
    if expected is not None and expected != old.mod_revision:
        raise Conflict(f"key {key!r}: {verb} expected revision {expected} but it is at "
                       f"revision {old.mod_revision}; read it again and retry")
    return old


def gone(prefix: str, after: int, compacted: int | None) -> Gone:
    upto = f"up to revision {compacted} " if compacted is not None else ""
    return Gone(f"watch on prefix {prefix!r} from revision {after}: history {upto}has been "
                f"compacted; re-list and watch from the revision the list returns")


def compact_too_far(revision: int, current: int) -> ValueError:
    return ValueError(f"cannot compact at revision {revision}: the store is only at "
                      f"revision {current}")
