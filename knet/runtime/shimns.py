"""The container side of the shim: namespaces, the root file system, an init, privileges.

Runs in the shim's forked child (see shim.py). `enter` joins the pod's netns and IPC
namespace, unshares mount + UTS, runs the rootfs plan (rootfs.py: overlay root, fresh /proc,
/sys, /dev, /tmp, masks, the pod's files and volumes) and pivots into it. With a PID
namespace of its own, the child is its pid 1: `init` forks the container's process, forwards
signals to its process group and exits with its status (the kernel then kills what is left,
as it does when a container's init ends), so SIGTERM stops a `sleep` at once, as before
PID namespaces. `become` drops capabilities from the bounding set and switches user.
Stdlib-only and import-light, like the shim.
"""

from __future__ import annotations

import _signal as signal  # type: ignore[import-not-found]
import ctypes
import errno
import os

from knet.runtime import records

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_CAPBSET_DROP, PR_SET_CHILD_SUBREAPER = 24, 36
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
FORWARDED = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH")
_libc = ctypes.CDLL(None, use_errno=True)


def call(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(src: str, dst: str, flags: int, fstype: str = "", data: str = "") -> None:
    call(_libc.mount(src.encode(), dst.encode(), fstype.encode() if fstype else None,
                     ctypes.c_ulong(flags), data.encode() if data else None),
         f"mount {src} on {dst}")


def set_subreaper() -> None:
    """Orphans of the container reparent to the caller (the shim), which kills them."""
    call(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")


def in_root(root: str, path: str) -> str:
    """`path` of the container as a host path under `root`, its symlinks resolved inside
    the root (an absolute link restarts at `root`; `..` stops there)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    cur, hops = root, 0
    while parts:
        p = parts.pop(0)
        if p == "..":
            cur = cur if cur == root else os.path.dirname(cur)
            continue
        nxt = f"{cur}/{p}"
        if os.path.islink(nxt):
            hops += 1
            if hops > 40:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
            target = os.readlink(nxt)
            cur = root if target.startswith("/") else cur
            parts = [q for q in target.split("/") if q not in ("", ".")] + parts
            continue
        cur = nxt
    return cur


def _make(dst: str, kind: str) -> None:
    if kind == "d":
        os.makedirs(dst, exist_ok=True)
    elif kind == "f" and not os.path.lexists(dst):
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        os.close(os.open(dst, os.O_WRONLY | os.O_CREAT, 0o644))


def _remount_ro(dst: str) -> None:
    keep = os.statvfs(dst).f_flag & (MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount("none", dst, MS_REMOUNT | MS_BIND | MS_RDONLY | keep)


def _read_only(dst: str, root: str) -> None:
    if not os.path.lexists(dst):
        return  # e.g. a /proc file this kernel lacks
    if dst != root and not os.path.ismount(dst):
        mount(dst, dst, MS_BIND | MS_REC)
    _remount_ro(dst)


def _mask(dst: str, writable: int, mode: str) -> None:
    if os.path.isdir(dst):
        mount("tmpfs", dst, MS_NOSUID | MS_NODEV | (0 if writable else MS_RDONLY), "tmpfs",
              f"mode={mode}")
    elif os.path.lexists(dst):  # as runc masks: /dev/null takes writes and reads as empty,
        mount("/dev/null", dst, MS_BIND)  # so no read-only remount (one mount call, not two)


def _opaque(upper: str, path: str, mode: str) -> bool:
    """Hide the host's dir `path` (its real path) from an overlay not yet mounted: an
    opaque dir in the upper layer, `mode`, its parents made as the host has them. True if
    done or nothing to hide; False if the upper layer takes no trusted xattrs (mask it)."""
    real = os.path.realpath(path)
    if not os.path.isdir(real):
        return True
    cur = upper
    for part in real.strip("/").split("/"):
        host = cur[len(upper):] + "/" + part
        cur = upper + host
        if not os.path.isdir(cur):
            st = os.stat(host)
            os.mkdir(cur)
            os.chown(cur, st.st_uid, st.st_gid)
            os.chmod(cur, st.st_mode & 0o7777)
    os.chmod(cur, int(mode, 8))
    try:
        os.setxattr(cur, "trusted.overlay.opaque", b"y")
    except OSError:
        return False
    return True


def run_plan(plan: list[tuple[Any, ...]]) -> None:
    """Carry out a rootfs plan (see rootfs.py for the steps)."""
    root = "/"
    for step in plan:
        op = step[0]
        if op == "overlay":
            root, upper, work, hide = step[1:]
            for d in (root, upper, work):
                os.makedirs(d, exist_ok=True)
            masks = [(p, mode) for p, mode in hide if not _opaque(upper, p, mode)]
            mount("overlay", root, 0, "overlay", f"lowerdir=/,upperdir={upper},workdir={work}")
            for p, mode in masks:
                _mask(in_root(root, p), 1, mode)
            records.mark("child overlay mounted")
        elif op == "mount":
            src, path, fstype, flags, data, make = step[1:]
            dst = in_root(root, path)
            _make(dst, make)
            mount(src, dst, flags, fstype, data)
        elif op == "ro":
            _read_only(in_root(root, step[1]), root)
        elif op == "mask":
            _mask(in_root(root, step[1]), step[2], step[3])
        elif op == "mknod":
            dst = in_root(root, step[1])
            os.mknod(dst, 0o20666, os.makedev(step[2], step[3]))  # S_IFCHR | 0666
            os.chmod(dst, 0o666)  # whatever the umask
        elif op == "symlink":
            dst = in_root(root, os.path.dirname(step[2])) + "/" + os.path.basename(step[2])
            if not os.path.lexists(dst):
                os.symlink(step[1], dst)
        elif op == "pivot":
            records.mark("child before pivot")
            os.chdir(step[1])
            call(_libc.syscall(SYS_PIVOT_ROOT[os.uname().machine], b".", b"."), "pivot_root")
            call(_libc.umount2(b".", MNT_DETACH), "umount the host's root")
            os.chdir("/")


def enter(spec: dict[str, Any]) -> None:
    """Join the pod's namespaces, make new mount + UTS ones, build the root and enter it."""
    fd = os.open(f"/run/netns/{spec['netns']}", os.O_RDONLY)
    call(_libc.setns(fd, CLONE_NEWNET), f"setns {spec['netns']}")
    os.close(fd)
    flags = CLONE_NEWNS | CLONE_NEWUTS
    if spec.get("ipcns"):
        fd = os.open(spec["ipcns"], os.O_RDONLY)
        call(_libc.setns(fd, CLONE_NEWIPC), f"setns the pod's IPC namespace {spec['ipcns']}")
        os.close(fd)
    else:
        flags |= CLONE_NEWIPC
    call(_libc.unshare(flags), "unshare mount+uts")
    mount("none", "/", MS_REC | MS_PRIVATE)
    records.mark("child joined netns+ipc, unshared")
    run_plan(spec["plan"])
    records.mark("child root built")
    name = spec["hostname"].encode()
    call(_libc.sethostname(name, ctypes.c_size_t(len(name))), f"sethostname {spec['hostname']}")


def enter_pid_namespace(spec: dict[str, Any]) -> None:
    """In the shim, before it forks the container: the next child is in a new PID namespace
    (its pid 1) or, with spec pidns, in the pod's shared one."""
    if spec.get("pidns"):
        fd = os.open(spec["pidns"], os.O_RDONLY)
        call(_libc.setns(fd, CLONE_NEWPID), f"setns the pod's PID namespace {spec['pidns']}")
        os.close(fd)
    else:
        call(_libc.unshare(CLONE_NEWPID), "unshare pid")


def drop_caps(keep: list[int], last: int) -> None:
    """Take every capability not in `keep` out of the bounding set (exec then gives a root
    process exactly `keep`; a non-root one none, as in Docker)."""
    kept = set(keep)
    for cap in range(last + 1):
        if cap not in kept:
            call(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"drop capability {cap}")
    records.mark("workload caps dropped")


def spawn(argv: list[str], env: dict[str, str], fds: tuple[int, int, int]) -> int:
    """Start argv (searched in env's PATH, like execvp) in a new process group with fds as its
    stdin, stdout, stderr and default signal handling; its pid. posix_spawn is vfork +
    exec: nothing of the caller's memory is copied, and an exec failure is raised here."""
    kw: dict[str, Any] = {
        "file_actions": [(os.POSIX_SPAWN_DUP2, fd, i) for i, fd in enumerate(fds)],
        "setpgroup": 0, "setsigmask": (),
        "setsigdef": [getattr(signal, n) for n in ("SIGPIPE", "SIGXFSZ", "SIGINT", *FORWARDED)]}
    if "/" in argv[0]:
        return os.posix_spawn(argv[0], argv, env, **kw)
    denied: OSError | None = None
    for d in env.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(":"):
        path = os.path.join(d or ".", argv[0])
        if not os.path.exists(path):
            continue
        try:
            return os.posix_spawn(path, argv, env, **kw)
        except PermissionError as exc:
            denied = exc
        except (FileNotFoundError, NotADirectoryError):
            pass
    raise denied or FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), argv[0])


def name_init() -> None:
    """`ps -o comm` / `top` show what it is. Before a switch of user: that makes the process
    undumpable, its /proc/self files root's (a failure here then is no reason to stop)."""
    try:
        with open("/proc/self/comm", "w") as f:
            f.write("knet-init")
    except OSError:
        pass


def init(workload: int, report_r: int, report_w: int) -> None:
    """pid 1 of the container's PID namespace: pass the workload's start report on (unless
    report_r is -1: it was spawned, its start known), forward signals to its process group,
    reap orphans, exit with its status. Never returns."""
    def forward(signum: int, _frame: object) -> None:
        try:
            os.killpg(workload, signum)
        except OSError:
            pass

    for name in FORWARDED:
        signal.signal(getattr(signal, name), forward)
    name_init()
    if report_r >= 0:
        chunks = []
        while chunk := os.read(report_r, 4096):  # EOF at the exec (close-on-exec) or failure
            chunks.append(chunk)
        if chunks:
            os.write(report_w, b"".join(chunks))
        os.close(report_w)
        os.close(report_r)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(0)
        if pid == workload:
            code = os.waitstatus_to_exitcode(status)
            os._exit(128 - code if code < 0 else code)
