"""Linux capabilities of a container: securityContext.capabilities on Docker's default set.

Pure: names in, capability numbers out. The shim drops every other capability from the
bounding set before it execs the container (a root process then gets exactly these); exec
sessions get the same set through `setpriv --bounding-set`. As in containerd, `drop` applies
to the defaults first and `add` after it, `ALL` means every capability, names may carry the
`CAP_` prefix or not, and a privileged container keeps them all.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["DEFAULT", "NAMES", "UnknownCapability", "bounding_set", "setpriv_arg"]

NAMES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE",
    "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME",
    "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ",
    "PERFMON", "BPF", "CHECKPOINT_RESTORE")
# moby/containerd's default capability set for a container
DEFAULT = ("CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
           "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE")


class UnknownCapability(ValueError):
    """A capability name that Linux does not define."""


def _norm(name: str) -> str:
    n = name.strip().upper()
    n = n.removeprefix("CAP_")
    if n != "ALL" and n not in NAMES:
        raise UnknownCapability(f"unknown capability {name!r}; use names such as NET_ADMIN, "
                                "SYS_TIME or ALL")
    return n


def bounding_set(*, add: Iterable[str] = (), drop: Iterable[str] = (),
                 privileged: bool = False) -> list[int]:
    """The capability numbers a container keeps, sorted."""
    if privileged:
        return list(range(len(NAMES)))
    keep = set(DEFAULT)
    dropped = {_norm(n) for n in drop}
    keep = set() if "ALL" in dropped else keep - dropped
    added = {_norm(n) for n in add}
    keep = set(NAMES) if "ALL" in added else keep | added
    return sorted(NAMES.index(n) for n in keep)


def setpriv_arg(keep: Iterable[int]) -> str:
    """`setpriv --bounding-set` value keeping exactly `keep` ("-all" when empty)."""
    return ",".join(["-all", *(f"+{NAMES[i].lower()}" for i in sorted(keep))])
