"""cgroups per container instance: limits from resources.limits, usage, OOM kills; v1 or v2.

`Cgroups.detect()` reads /proc/self/mountinfo once: cgroup v2 when a cgroup2 mount offers
the memory controller, else the v1 hierarchies (memory, cpu, cpuacct, pids; co-mounted ones
count once). `create` makes one leaf per instance, `knet/<leaf>` in each hierarchy, and
writes its limits; the paths are recorded in the instance's spec, so the shim puts the
container in them (writing its pid to cgroup.procs before the exec), reads the OOM-kill
count when it exits, and removes them by record, never by a name pattern. Stdlib-only
and import-light: the shim imports it.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

V1_CONTROLLERS = ("memory", "cpu", "cpuacct")
CFS_PERIOD_US = 100_000
PARENT = "knet"


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


class Cgroups:
    """Where the hierarchies are (`version` 1 or 2; 0: no usable cgroup mount)."""

    def __init__(self, version: int, mounts: dict[str, str]) -> None:
        self.version = version
        self.mounts = mounts        # v1: controller -> mount point; v2: {"": mount point}

    def __repr__(self) -> str:
        return f"<Cgroups v{self.version} {sorted(set(self.mounts.values()))}>"

    @classmethod
    def detect(cls, mountinfo: str | None = None) -> Cgroups:
        text = mountinfo if mountinfo is not None else _read("/proc/self/mountinfo")
        v1: dict[str, str] = {}
        v2 = ""
        for line in text.splitlines():
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            if len(fields) < 5 or len(rfields) < 3:
                continue
            if rfields[0] == "cgroup2" and not v2:
                v2 = fields[4]
            elif rfields[0] == "cgroup":
                for opt in rfields[2].split(","):
                    if opt in V1_CONTROLLERS:
                        v1.setdefault(opt, fields[4])
        if v2 and mountinfo is None and "memory" in _controllers(v2):
            return cls(2, {"": v2})
        if "memory" in v1:
            return cls(1, v1)
        return cls(0, {})

    def leaf_dirs(self, leaf: str, *, cpu: bool = True) -> list[str]:
        """The cgroup dirs of one leaf, one per distinct hierarchy; v1's cpu hierarchy only
        for a CPU limit (each hierarchy joined costs the container's start time)."""
        roots = {r for c, r in self.mounts.items() if cpu or c != "cpu"}
        roots |= {r for c, r in self.mounts.items() if c in ("memory", "cpuacct", "")}
        return [os.path.join(r, PARENT, leaf) for r in sorted(roots)]

    def create(self, leaf: str, *, memory: int | None = None,
               cpu_millis: int | None = None) -> list[str]:
        """Make the leaf's dirs and write its limits; the dirs (to record)."""
        if not self.version:
            return []
        dirs = self.leaf_dirs(leaf, cpu=cpu_millis is not None)
        for d in dirs:
            parent = os.path.dirname(d)
            if self.version == 2 and not os.path.isdir(parent):
                os.makedirs(parent, exist_ok=True)
                _enable_v2(os.path.dirname(parent), parent)
            os.makedirs(d, exist_ok=True)
        try:
            for d in dirs:
                _limits(d, self.version, memory, cpu_millis)
        except OSError:
            remove(dirs)
            raise
        return dirs


    def remove_parents(self) -> None:
        """Remove knet's parent dir in each hierarchy if no leaf is left in it."""
        for root in set(self.mounts.values()):
            try:
                os.rmdir(os.path.join(root, PARENT))
            except OSError:
                pass  # other containers' leaves are still there, or it is gone


def _controllers(v2: str) -> list[str]:
    try:
        return _read(os.path.join(v2, "cgroup.controllers")).split()
    except OSError:
        return []


def _enable_v2(root: str, parent: str) -> None:
    for d in (root, parent):
        for c in ("memory", "cpu", "pids"):
            try:
                _write(os.path.join(d, "cgroup.subtree_control"), f"+{c}")
            except OSError:
                pass  # not offered here: that limit is simply not enforced


def _limits(d: str, version: int, memory: int | None, cpu_millis: int | None) -> None:
    def has(name: str) -> bool:
        return os.path.exists(os.path.join(d, name))

    if memory is not None:
        if version == 2:
            _write(os.path.join(d, "memory.max"), str(memory))
            if has("memory.swap.max"):
                _write(os.path.join(d, "memory.swap.max"), "0")
        elif has("memory.limit_in_bytes"):
            _write(os.path.join(d, "memory.limit_in_bytes"), str(memory))
            if has("memory.memsw.limit_in_bytes"):
                _write(os.path.join(d, "memory.memsw.limit_in_bytes"), str(memory))
    if cpu_millis is not None:
        quota = max(cpu_millis * CFS_PERIOD_US // 1000, 1000)
        if version == 2:
            _write(os.path.join(d, "cpu.max"), f"{quota} {CFS_PERIOD_US}")
        elif has("cpu.cfs_quota_us"):
            _write(os.path.join(d, "cpu.cfs_period_us"), str(CFS_PERIOD_US))
            _write(os.path.join(d, "cpu.cfs_quota_us"), str(quota))


def join(dirs: Iterable[str], *, pid: int = 0) -> None:
    """Move process `pid` (0: the caller) into every dir; its later children follow."""
    for d in dirs:
        _write(os.path.join(d, "cgroup.procs"), str(pid))


def oom_kills(dirs: Iterable[str]) -> int:
    """How many processes the kernel's OOM killer killed in these cgroups."""
    for d in dirs:
        for name in ("memory.events", "memory.oom_control"):
            try:
                text = _read(os.path.join(d, name))
            except OSError:
                continue
            for line in text.splitlines():
                k, _, v = line.partition(" ")
                if k == "oom_kill":
                    return int(v)
    return 0


def container_usage(dirs: Iterable[str]) -> dict[str, int]:
    """CPU time used (ns, `cpu_ns`) and memory in use (bytes, `memory_bytes`) of one
    container instance, read from its recorded cgroup dirs (for the metrics API)."""
    out = {"cpu_ns": 0, "memory_bytes": 0}
    for d in dirs:
        for name, key, scale in (("cpuacct.usage", "cpu_ns", 1),
                                 ("memory.usage_in_bytes", "memory_bytes", 1),
                                 ("memory.current", "memory_bytes", 1)):
            try:
                out[key] = int(_read(os.path.join(d, name))) * scale
            except (OSError, ValueError):
                pass
        try:
            for line in _read(os.path.join(d, "cpu.stat")).splitlines():
                if line.startswith("usage_usec "):
                    out["cpu_ns"] = int(line.split()[1]) * 1000
        except (OSError, ValueError):
            pass
    return out


def remove(dirs: Iterable[str], *, wait_s: float = 1.0) -> list[str]:
    """rmdir each dir (waiting up to wait_s for its last processes to go); those left."""
    left = []
    deadline = time.monotonic() + wait_s
    for d in dirs:
        while True:
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() >= deadline:
                    left.append(d)
                    break
                time.sleep(0.01)
    return left
