"""The static token file: kube-apiserver's --token-auth-file, one CSV line per identity:

    token,user,uid,"group1,group2"

knet keeps one such file in the state dir (0600) with a random token for the admin
(`kubernetes-admin`, system:masters), each node agent (`system:node:NODE`, system:nodes) and
kube-proxy (`system:kube-proxy`). `ensure_tokens` adds the identities missing from the file
and keeps the others, so tokens survive restarts and every writer agrees on them.
`TokenFileAuthn` re-reads the file when it changes, so `knet node add` can give a joining
node its identity (and `knet node remove` take it back, `remove_tokens`) on a running API
server; kube-apiserver reads its token file once and joins nodes with bootstrap tokens and
CSRs, which knet leaves out on one host.
"""

from __future__ import annotations

import csv
import io
import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path

from control.auth.tokens import ADMIN, StaticTokens
from control.auth.types import AUTHENTICATED, UserInfo

__all__ = ["KUBE_PROXY", "TOKENS_FILE", "TokenFileAuthn", "ensure_tokens", "node_user",
           "read_tokens", "remove_tokens"]

TOKENS_FILE = "tokens.csv"
NODES_GROUP = "system:nodes"
KUBE_PROXY = UserInfo("system:kube-proxy", groups=(AUTHENTICATED,))


def node_user(node: str) -> UserInfo:
    return UserInfo(f"system:node:{node}", groups=(NODES_GROUP, AUTHENTICATED))


def read_tokens(path: Path) -> dict[str, UserInfo]:
    """token -> user, from a token file (empty if there is none)."""
    if not path.exists():
        return {}
    out: dict[str, UserInfo] = {}
    for n, row in enumerate(csv.reader(io.StringIO(path.read_text())), 1):
        if not row or not row[0].strip() or row[0].startswith("#"):
            continue
        if len(row) < 2:
            raise ValueError(f"{path} line {n}: expected token,user,uid,\"groups\"; fix or "
                             "remove the line")
        groups = tuple(g for g in (row[3] if len(row) > 3 else "").split(",") if g)
        out[row[0].strip()] = UserInfo(row[1], uid=row[2] if len(row) > 2 else "",
                                       groups=groups)
    return out


class TokenFileAuthn:
    """Bearer tokens from the token file (re-read when its mtime or size changes) plus
    `extra` tokens given at start (the admin's)."""

    def __init__(self, path: Path, extra: Mapping[str, UserInfo]) -> None:
        self.path = path
        self.extra = dict(extra)
        self._seen: tuple[int, int] | None = None
        self._static = StaticTokens(self.extra)
        self._reload()

    def _reload(self) -> None:
        try:
            st = self.path.stat()
            seen: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError:
            seen = None
        if seen == self._seen:
            return
        try:
            tokens = read_tokens(self.path)
        except (OSError, ValueError):
            return      # half-written or broken: keep what was read last
        self._static = StaticTokens({**tokens, **self.extra})
        self._seen = seen

    async def authenticate(self, token: str) -> UserInfo | None:
        self._reload()
        return await self._static.authenticate(token)


def remove_tokens(path: Path, user_names: Iterable[str]) -> None:
    """Drop the tokens of these users from the file (a removed node's credential)."""
    gone = set(user_names)
    rows = [(t, u) for t, u in read_tokens(path).items() if u.name not in gone]
    _write(path, rows)


def _write(path: Path, rows: list[tuple[str, UserInfo]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for token, user in rows:
        writer.writerow([token, user.name, user.uid, ",".join(user.groups)])
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(buf.getvalue())
    os.replace(tmp, path)


def ensure_tokens(path: Path, users: Iterable[UserInfo], *,
                  admin_token: str | None = None) -> dict[str, str]:
    """Make sure every user has a token in `path` (0600); returns user name -> token for all
    the file holds. `admin_token` is the admin's token if the file has none yet."""
    current = read_tokens(path)
    by_name = {u.name: t for t, u in current.items()}
    rows = list(current.items())
    changed = not path.exists()
    for user in users:
        if user.name in by_name:
            continue
        token = admin_token if (user.name == ADMIN.name and admin_token) else \
            secrets.token_urlsafe(32)
        rows.append((token, user))
        by_name[user.name] = token
        changed = True
    if changed:
        _write(path, rows)
    return by_name
