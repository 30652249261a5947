"""Pod address management for one node's pod CIDR (pure: files, no netlink).

Host-local IPAM like the CNI plugin of that name: each owner (a pod key) holds one
address; an address is never handed to a second owner while held; the network, gateway
(first host) and broadcast addresses are never handed out. A rotating cursor makes a freed
address the last to be reused. The state survives a restart or a crash mid-write: a JSON
snapshot written atomically (temp + rename) plus a JSON-lines journal of the changes since,
one small append per allocation (a rename costs milliseconds on overlay filesystems); a torn
last line is ignored, and the journal is folded into the snapshot every `COMPACT_EVERY` lines.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
from pathlib import Path

from knet.errors import Exhausted, UsageError

__all__ = ["Ipam", "write_json_atomic"]

log = logging.getLogger(__name__)
COMPACT_EVERY = 512
Stamp = tuple[int, ...]


def write_json_atomic(path: Path, data: object) -> None:
    """Write `data` as JSON to `path` so readers see the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, sort_keys=True))
    os.replace(tmp, path)


class Ipam:
    """Addresses of one node's pod CIDR, persisted in `path` (None: memory only)."""

    def __init__(self, *, node: str, cidr: str, path: Path | None) -> None:
        try:
            self.network = ipaddress.IPv4Network(cidr, strict=True)
        except ValueError as exc:
            raise UsageError(f"node {node}: invalid pod CIDR {cidr!r} ({exc}); "
                             "give an IPv4 network such as 10.244.1.0/24") from None
        if self.network.prefixlen > 29:
            raise UsageError(f"node {node}: pod CIDR {cidr} is too small; use /29 or larger")
        self.node = node
        self.path = path
        self.gateway = str(self.network.network_address + 1)
        self._held: dict[str, str] = {}
        self._cursor = 0
        self._stamp: Stamp | None = None
        self._lines = 0
        self._load()

    def __repr__(self) -> str:
        return f"<Ipam {self.node} {self.network} {len(self._held)} held>"

    @property
    def _journal(self) -> Path | None:
        return self.path.with_suffix(".log") if self.path is not None else None

    def _file_stamp(self) -> Stamp | None:
        """Identity of the files on disk: changes whenever anyone writes them."""
        out: list[int] = []
        for p in (self.path, self._journal):
            try:
                st = os.stat(p) if p is not None else None
            except FileNotFoundError:
                st = None
            out += [st.st_ino, st.st_mtime_ns, st.st_size] if st else [0, 0, 0]
        return tuple(out) if any(out) else None

    def refresh(self) -> None:
        """Reload if another process (or another Ipam on the same file) changed it."""
        if self.path is not None and self._file_stamp() != self._stamp:
            self._held, self._cursor = {}, 0
            self._load()

    def _load(self) -> None:
        self._stamp = self._file_stamp()
        self._lines = 0
        if self.path is None or self._stamp is None:
            return
        if self.path.exists():
            data = json.loads(self.path.read_text())
            if data.get("cidr") != str(self.network):
                raise UsageError(f"node {self.node}: IPAM file {self.path} is for "
                                 f"{data.get('cidr')}, not {self.network}; delete the node "
                                 "first ('knet down')")
            self._held = dict(data.get("held", {}))
            self._cursor = int(data.get("cursor", 0))
        assert self._journal is not None
        if self._journal.exists():
            text = self._journal.read_text()
            for line in text.splitlines():
                self._replay(line)
            if text and not text.endswith("\n"):
                self._lines = COMPACT_EVERY     # torn tail: fold before appending after it

    def _replay(self, line: str) -> None:
        try:
            op = json.loads(line)
        except ValueError:
            return                      # a line torn by a crash: that change never happened
        if op.get("ip"):
            self._held[op["key"]] = op["ip"]
            self._cursor = int(op.get("cursor", self._cursor))
        else:
            self._held.pop(op["key"], None)
        self._lines += 1

    def _record(self, key: str, ip: str | None) -> None:
        """Append one change to the journal (fold it into the snapshot now and then)."""
        if self.path is None or self._journal is None:
            return
        if self._lines >= COMPACT_EVERY or not self.path.exists():
            write_json_atomic(self.path, {"cidr": str(self.network), "cursor": self._cursor,
                                          "held": self._held})
            self._journal.unlink(missing_ok=True)
            self._lines = 0
        else:
            op = {"key": key, "ip": ip, "cursor": self._cursor}
            with open(self._journal, "a") as f:
                f.write(json.dumps(op) + "\n")
            self._lines += 1
        self._stamp = self._file_stamp()

    @property
    def capacity(self) -> int:
        """How many pod addresses the CIDR holds (minus network, gateway, broadcast)."""
        return self.network.num_addresses - 3

    def held(self) -> dict[str, str]:
        """owner -> address, a copy."""
        return dict(self._held)

    def get(self, owner: str) -> str | None:
        return self._held.get(owner)

    def allocate(self, owner: str, *, ip: str | None = None) -> str:
        """Address of `owner`: the one it holds, `ip` if asked and free, else the next free."""
        have = self._held.get(owner)
        if have is not None and (ip is None or ip == have):
            return have
        if have is not None:
            raise UsageError(f"pod {owner}: already has {have} on node {self.node}, "
                             f"cannot switch to {ip}; delete the pod first")
        addr = self._claim(owner, ip) if ip is not None else self._next(owner)
        self._held[owner] = addr
        self._record(owner, addr)
        log.debug("%s: allocated %s on node %s", owner, addr, self.node)
        return addr

    def _claim(self, owner: str, ip: str) -> str:
        try:
            addr = ipaddress.IPv4Address(ip)
        except ValueError:
            raise UsageError(f"pod {owner}: invalid IPv4 address {ip!r}") from None
        if (addr not in self.network or addr in (self.network.network_address,
                                                 self.network.broadcast_address)
                or str(addr) == self.gateway):
            raise UsageError(f"pod {owner}: address {ip} is not a usable pod address of node "
                             f"{self.node} ({self.network}, gateway {self.gateway})")
        taken = {a: o for o, a in self._held.items()}
        if str(addr) in taken:
            raise UsageError(f"pod {owner}: address {ip} is already held by pod {taken[str(addr)]} "
                             f"on node {self.node}; pick another or delete that pod")
        return str(addr)

    def _next(self, owner: str) -> str:
        used = set(self._held.values())
        size = self.capacity
        base = self.network.network_address + 2      # first address after the gateway
        for step in range(size):
            i = (self._cursor + step) % size
            cand = str(base + i)
            if cand not in used:
                self._cursor = (i + 1) % size
                return cand
        raise Exhausted(f"pod {owner}: node {self.node} pod CIDR {self.network} is exhausted "
                        f"({size} addresses in use); delete pods on {self.node} or give nodes a "
                        "larger pod CIDR")

    def release(self, owner: str) -> str | None:
        """Free the address of `owner`; a no-op if it holds none. Returns the freed address."""
        addr = self._held.pop(owner, None)
        if addr is not None:
            self._record(owner, None)
        return addr

    def destroy(self) -> None:
        """Forget every address and remove the state file (the node is gone)."""
        self._held.clear()
        if self.path is not None and self._journal is not None:
            self.path.unlink(missing_ok=True)
            self._journal.unlink(missing_ok=True)
        self._stamp = None
