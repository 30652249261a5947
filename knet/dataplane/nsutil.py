"""Thin ctypes wrappers over unshare(2), setns(2) and mount(2).

Python 3.11 has no os.setns/os.unshare, so knet calls libc directly. setns is per
thread: switch, do the work (create a socket, exec), switch back. Errors are raised as
OSError with the errno and the object named, for callers to turn into knet errors.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Iterator
from contextlib import contextmanager

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

NETNS_RUN_DIR = "/run/netns"

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), f"unshare(0x{flags:x})")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def mount(source: str, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    _check(_libc.mount(source.encode(), target.encode(),
                       fstype.encode() if fstype else None, flags,
                       data.encode() if data else None), f"mount {source} on {target}")


def umount(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(target.encode(), flags), f"umount {target}")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), f"sethostname {name}")


def netns_path(name: str) -> str:
    """Path of a named network namespace (as `ip netns` names it)."""
    return os.path.join(NETNS_RUN_DIR, name)


@contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Switch this thread into netns `name` for the block, then back.

    Sockets created inside stay in that netns after the switch back.
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(netns_path(name), os.O_RDONLY)
    except FileNotFoundError:
        os.close(own)
        raise FileNotFoundError(f"netns {name} does not exist") from None
    try:
        setns(target, CLONE_NEWNET)
        try:
            yield
        finally:
            setns(own, CLONE_NEWNET)
    finally:
        os.close(target)
        os.close(own)


MNT_DETACH = 2


@contextmanager
def new_netns(name: str) -> Iterator[None]:
    """Make netns `name` the way `ip netns add` does, and run the block inside it.

    unshare(CLONE_NEWNET) in this thread, bind-mount /proc/thread-self/ns/net onto
    /run/netns/NAME, run the block (open sockets there), switch back. No fork. On an error
    before the block, nothing is left behind. FileExistsError if the name is taken.
    """
    path = netns_path(name)
    os.makedirs(NETNS_RUN_DIR, exist_ok=True)
    if os.path.exists(path) and not is_netns(name):
        os.unlink(path)           # an empty placeholder left by a crash before the mount
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444))
        try:
            unshare(CLONE_NEWNET)
        except OSError:
            os.unlink(path)
            raise
        try:
            try:
                mount("/proc/thread-self/ns/net", path, None, MS_BIND)
            except OSError:
                os.unlink(path)
                raise
            yield
        finally:
            setns(own, CLONE_NEWNET)
    finally:
        os.close(own)


def is_netns(name: str) -> bool:
    """True if /run/netns/NAME is a live namespace (a bind mount of nsfs), not just a file."""
    try:
        return os.stat(netns_path(name)).st_dev == os.stat("/proc/thread-self/ns/net").st_dev
    except FileNotFoundError:
        return False


def remove_netns(name: str) -> bool:
    """Unmount and remove /run/netns/NAME (as `ip netns del`); False if it was not there.

    The namespace itself goes when its last user (process, socket) goes.
    """
    path = netns_path(name)
    try:
        umount(path, MNT_DETACH)
    except OSError as exc:
        if exc.errno not in (22, 2):      # EINVAL: not a mount point; ENOENT: gone
            raise
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True
