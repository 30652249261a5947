"""The static token file (--token-auth-file shape): identities added once, kept across
writers, groups round-tripped, the file private."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from control.auth.tokenfile import KUBE_PROXY, ensure_tokens, node_user, read_tokens
from control.auth.tokens import ADMIN, StaticTokens


async def test_each_identity_gets_its_own_token_once(tmp_path: Path) -> None:
    path = tmp_path / "tokens.csv"
    first = ensure_tokens(path, [node_user("node-1"), node_user("node-2")])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = ensure_tokens(path, [ADMIN, KUBE_PROXY, node_user("node-1")], admin_token="adm")
    assert again["system:node:node-1"] == first["system:node:node-1"]
    assert again["kubernetes-admin"] == "adm"
    assert len(set(again.values())) == 4
    users = read_tokens(path)
    node = users[again["system:node:node-2"]]
    assert node.name == "system:node:node-2"
    assert node.groups == ("system:nodes", "system:authenticated")
    assert users["adm"].groups == ("system:masters", "system:authenticated")
    assert '"system:nodes,system:authenticated"' in path.read_text()   # the CSV shape
    static = StaticTokens(users)
    assert (await static.authenticate(again["system:kube-proxy"])).name == "system:kube-proxy"
    assert await static.authenticate("nope") is None


async def test_token_file_authn_sees_nodes_join_and_leave(tmp_path: Path) -> None:
    """`knet node add` writes a token into the running API server's file; `remove` takes it
    back: the authenticator follows the file without a restart."""
    from control.auth.tokenfile import TokenFileAuthn, remove_tokens

    path = tmp_path / "tokens.csv"
    ensure_tokens(path, [node_user("node-1")])
    authn = TokenFileAuthn(path, {"adm": ADMIN})
    assert (await authn.authenticate("adm")).name == "kubernetes-admin"
    n3 = ensure_tokens(path, [node_user("n3")])["system:node:n3"]
    os.utime(path, ns=(1, 1))        # a different mtime even within the clock's resolution
    assert (await authn.authenticate(n3)).name == "system:node:n3"
    remove_tokens(path, ["system:node:n3"])
    os.utime(path, ns=(2, 2))
    assert await authn.authenticate(n3) is None
    assert "system:node:node-1" in {u.name for u in read_tokens(path).values()}
    assert (await authn.authenticate("adm")).name == "kubernetes-admin"
