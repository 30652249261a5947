"""One cluster per kube-proxy mode for a test module whose tests are about kube-proxy's
behaviour: a module-scoped fixture with `params=PROXY_MODES` runs every test against a
userspace cluster, then against an nftables one (`knet up --proxy-mode nftables`).
`in_mode` brings the cluster up and down around a `Cluster` (the cluster kit's) and leaves
`cluster.mode` set for the tests that are one mode's own (they skip the other)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["PROXY_MODES", "in_mode"]

PROXY_MODES = ["userspace", "nftables"]


@contextlib.contextmanager
def in_mode(c: Any, mode: str, *flags: str, host_state: Callable[[Path], str]) -> Iterator[Any]:
    """`knet up --nodes 2 [--proxy-mode MODE] FLAGS` for Cluster `c`, `knet down` after, and
    nothing left behind on the host."""
    c.mode = mode
    before = host_state(c.state_dir)
    c.knet("up", "--nodes", "2", "--state-dir", str(c.state_dir), "--timeout", "90",
           *(["--proxy-mode", mode] if mode != "userspace" else []), *flags,
           env={"KNET_NODE_MONITOR_GRACE": "10", "KNET_POD_EVICTION_GRACE": "1"})
    try:
        yield c
    finally:
        c.knet("down", "--state-dir", str(c.state_dir), check=False)
        assert host_state(c.state_dir) == before, "knet down left something behind"
