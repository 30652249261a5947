"""A container's root file system as a plan: pure data built from the spec, run by the shim.

The root is an overlay whose lower layer is the host's `/` (read-only through it) and whose
upper and work dirs are the container instance's own (`pod_dir/roots/NAME/N/`, deleted with
the instance): whatever the container writes lands there, never on the host. They live on a
tmpfs per pod, as /tmp and /run do: making an overlay's work dir on a journaled disk costs
0.2-8 ms per start and its unmount syncs the disk (1-30 ms); on tmpfs both take ~0.1 ms, and
what a container writes is charged to its memory cgroup. Mounts nested
under the host's `/` (/proc, /sys, /dev, /run...) are not part of that overlay, so the plan
mounts fresh ones: a proc of the container's PID namespace, a sysfs of the pod's netns (so
/sys/class/net lists the pod's eth0 and lo), a minimal tmpfs /dev (null, zero, full, random,
urandom, tty, a private devpts, /dev/shm, /dev/mqueue), a private tmpfs /tmp and /run. knet's
state dirs, /root and /home are empty (`HIDDEN`: opaque dirs in the upper layer, which hide
the host's below them without a mount each); the pod's files and
volumes are bind-mounted on top; then the shim pivots into the root, so no host path is
reachable except those mounted in. Unless privileged, /proc's host-wide knobs are read-only
or masked and /sys is read-only, as Docker's defaults do.

A plan is a list of marshal-able tuples (see `Step`); container paths in it are resolved
inside the new root by the shim (symlinks such as /var/run -> /run never lead out of it).
Building it here, in the agent, keeps the logic testable without root and the shim small.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from knet.runtime import layout
from knet.runtime.base import ContainerSpec, PodSandbox

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC = 32, 4096, 16384

# ("overlay", root, upper, work, hide)  the root itself; each (path, mode) in hide is an empty
#                      writable dir: opaque in the upper layer (no mount), else a tmpfs over it
# ("mount", source, path, fstype, flags, data, make) make: "d" dir, "f" file, "" none
# ("ro", path)         make a path read-only: remount it if a mount, else bind it on itself first
# ("mask", path, writable, mode)  if it exists: an empty tmpfs over a dir, /dev/null over a file
# ("symlink", target, path)
# ("mknod", path, major, minor)                     a character device, mode 0666
# ("pivot", root)                                   enter the root; the host's goes away
Step = tuple[object, ...]

DEFAULT_STATE_DIR = "/var/lib/knet"
HIDDEN = ("/root", "/home", DEFAULT_STATE_DIR)
DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8),
           "urandom": (1, 9), "tty": (5, 0)}  # made with mknod(2): cheaper than bind mounts
# Docker's masked and read-only /proc paths (moby oci/defaults.go)
PROC_MASKED = ("/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
               "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi")
PROC_READONLY = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
_NSD = MS_NOSUID | MS_NODEV


def instance_root(log_path: Path) -> Path:
    """The instance's root dir (layout.root_dir): upper/, work/ and the mount point."""
    return layout.root_dir(layout.instance_of_log(log_path))


def _under(path: str, parents: Sequence[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in parents)


def hidden_paths(sandbox: PodSandbox, extra: Sequence[str] = ()) -> list[str]:
    """Host paths a container must not see: HIDDEN, `extra` (the agent's state dir), and
    the state dir that holds this pod's dir (the parent of its `pods/` directory)."""
    out = [*HIDDEN, *extra]
    for parent in Path(sandbox.pod_dir).resolve().parents:
        if parent.name == "pods":
            out.append(str(parent.parent))
            break
    kept: list[str] = []
    for p in sorted({os.path.normpath(p) for p in out if p and p != "/"}, key=len):
        if not _under(p, kept):  # a path under one already hidden is hidden with it
            kept.append(p)
    return kept


def _bind(src: str, path: str, *, read_only: bool, make: str) -> list[Step]:
    steps: list[Step] = [("mount", src, path, "", MS_BIND | MS_REC, "", make)]
    return steps + ([("ro", path)] if read_only else [])


def _dev(privileged: bool) -> list[Step]:
    if privileged:
        return [("mount", "/dev", "/dev", "", MS_BIND | MS_REC, "", "d")]
    steps: list[Step] = [("mount", "tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC,
                          "mode=755,size=65536k", "d")]
    steps += [("mknod", f"/dev/{name}", major, minor) for name, (major, minor) in DEVICES.items()]
    steps += [("mount", "devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
               "newinstance,ptmxmode=0666,mode=0620,gid=5", "d"),
              ("symlink", "pts/ptmx", "/dev/ptmx"),
              ("mount", "shm", "/dev/shm", "tmpfs", _NSD | MS_NOEXEC, "mode=1777,size=65536k",
               "d"),
              ("mount", "mqueue", "/dev/mqueue", "mqueue", _NSD | MS_NOEXEC, "", "d")]
    for i, name in enumerate(("stdin", "stdout", "stderr")):
        steps.append(("symlink", f"/proc/self/fd/{i}", f"/dev/{name}"))
    return steps + [("symlink", "/proc/self/fd", "/dev/fd")]


def _proc(privileged: bool) -> list[Step]:
    steps: list[Step] = [("mount", "proc", "/proc", "proc", _NSD | MS_NOEXEC, "", "d")]
    if privileged:
        return steps
    steps += [("ro", p) for p in PROC_READONLY]
    # a masked file reads as /dev/null, a masked dir as an empty read-only tmpfs
    steps += [("mask", p, 0, "755") for p in PROC_MASKED]
    return steps


def _volume(host: str, path: str, read_only: bool, hidden: Sequence[str]) -> list[Step]:
    """A volume's bind mount. One whose host dir holds a hidden path (a hostPath `/`, as
    `kubectl debug node/NAME` mounts at /host) is bound without the mounts below it (no host
    /proc, /run/netns, tmpfs state dir) and with each hidden path under it emptied."""
    make = "d" if os.path.isdir(host) else "f"
    host = os.path.normpath(host)
    inner = [h for h in hidden if h != host and _under(h, [host])]
    if not inner:
        return _bind(host, path, read_only=read_only, make=make)
    steps: list[Step] = [("mount", host, path, "", MS_BIND, "", make)]
    for h in inner:
        rel = os.path.relpath(h, host)
        steps.append(("mask", os.path.join(path, rel), 0, "755"))
    return steps + ([("ro", path)] if read_only else [])


def keep_visible(hidden: Sequence[str], needed: Sequence[str]) -> list[str]:
    """Of the host paths containers need (knet's code, the interpreter), those a hidden
    path would cover: they are bind-mounted back, read-only."""
    out: list[str] = []
    for p in sorted({os.path.normpath(p) for p in needed}, key=len):
        if _under(p, hidden) and not _under(p, out):
            out.append(p)
    return out


def plan(sandbox: PodSandbox, spec: ContainerSpec, *, root: Path, hidden: Sequence[str],
         needed: Sequence[str] = ()) -> list[Step]:
    """The mount steps that give `spec` its root file system under `root`."""
    merged = str(root / "merged")
    # 711: the kept paths under it stay reachable, its listing stays empty
    hide = [(p, "711" if keep_visible([p], needed) else "700" if p == "/root" else "755")
            for p in hidden]
    steps: list[Step] = [("overlay", merged, str(root / "upper"), str(root / "work"), hide)]
    steps += [("mount", "tmpfs", "/tmp", "tmpfs", _NSD, "mode=1777", "d"),
              ("mount", "tmpfs", "/run", "tmpfs", _NSD, "mode=755,size=65536k", "d")]
    for p in keep_visible([*hidden, "/tmp", "/run"], needed):
        steps += _bind(p, p, read_only=True, make="d")
    steps += _proc(spec.privileged)
    steps.append(("mount", "sysfs", "/sys", "sysfs",
                  _NSD | MS_NOEXEC | (0 if spec.privileged else MS_RDONLY), "", "d"))
    steps += _dev(spec.privileged)
    pod = Path(sandbox.pod_dir)
    for name in ("resolv.conf", "hosts", "hostname"):
        steps += _bind(str(pod / name), f"/etc/{name}", read_only=False, make="f")
    for m in spec.mounts:
        steps += _volume(m.host_path, os.path.normpath(m.container_path), m.read_only, hidden)
    if spec.read_only_root:
        steps.append(("ro", "/"))
    return [*steps, ("pivot", merged)]
