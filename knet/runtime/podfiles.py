"""The files a pod's containers need on the host side, made before a start, removed after.

resolv.conf, hosts and hostname are written in place (same inode) so that running containers, which
bind-mount them, see an update. Volume mount points are made inside each container's own root
(rootfs.py), never on the host; `pod_dir/mountpoints` is only read to clean up after older
versions, which made them on the host. The pod's IPC namespace is kept by a bind mount of it
at `pod_dir/ipc` (`unshare --ipc=FILE`, as `ip netns` keeps a netns), and its containers' root
file systems on a tmpfs at `pod_dir/roots` (rootfs.py says why); both unmounted with the pod.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import shutil
from pathlib import Path

from knet.runtime import layout
from knet.runtime.base import ContainerSpec, ContainerStartError, PodSandbox

MADE_FILES = ("resolv.conf", "hosts", "hostname", "mountpoints", "containers", "ipc", "roots")
MS_NOSUID, MS_NODEV, MNT_DETACH = 2, 4, 2


def _write_if_changed(path: Path, text: str) -> None:
    try:
        if path.read_text() == text:
            return
    except FileNotFoundError:
        pass
    with open(path, "w") as f:  # in place: bind mounts of the old inode stay valid
        f.write(text)


async def ensure_ipc_namespace(pod_dir: Path) -> None:
    """Make the pod's IPC namespace at pod_dir/ipc unless it is there (idempotent)."""
    path = pod_dir / "ipc"
    if _is_mount(path):
        return
    path.touch()
    proc = await asyncio.create_subprocess_exec(
        "unshare", f"--ipc={path}", "true", stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise ContainerStartError(f"pod dir {pod_dir}: cannot make the pod's IPC namespace: "
                                  f"{err.decode(errors='replace').strip()}",
                                  reason="CreateContainerError")


def _is_mount(path: Path) -> bool:
    try:
        return os.stat(path).st_dev != os.stat(path.parent).st_dev
    except FileNotFoundError:
        return False


def ensure_roots_tmpfs(pod_dir: Path) -> None:
    """Mount the tmpfs for the pod's container roots at pod_dir/roots unless it is there."""
    path = pod_dir / "roots"
    if _is_mount(path):
        return
    path.mkdir(mode=0o700, exist_ok=True)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"tmpfs", str(path).encode(), b"tmpfs", ctypes.c_ulong(MS_NOSUID | MS_NODEV),
                  b"mode=700") != 0:
        err = ctypes.get_errno()
        raise ContainerStartError(f"pod dir {pod_dir}: cannot mount a tmpfs for its containers' "
                                  f"root file systems at {path}: {os.strerror(err)}",
                                  reason="CreateContainerError")


def _unmount(pod_dir: Path, name: str) -> None:
    path = pod_dir / name
    if _is_mount(path):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.umount2(str(path).encode(), MNT_DETACH) != 0:
            raise OSError(ctypes.get_errno(), f"umount {path}")

def prepare_pod_dir(sandbox: PodSandbox, spec: ContainerSpec, *, namespaces: bool) -> None:
    """Check what the container needs and make its files; errors are CreateContainerError."""
    def fail(msg: str) -> ContainerStartError:
        return ContainerStartError(f"pod {sandbox.key}: container {spec.name!r}: {msg}",
                                   reason="CreateContainerError")

    if not spec.argv:
        raise fail("no command to run (empty argv)")
    if namespaces and not os.path.exists(f"/run/netns/{sandbox.netns}"):
        raise fail(f"netns {sandbox.netns} does not exist; create the pod sandbox first")
    if not namespaces and spec.mounts:
        raise fail("volume mounts need the runtime's namespaces (run it as root with "
                   "namespaces=True)")
    for m in spec.mounts:
        if not os.path.isabs(m.container_path) or not os.path.exists(m.host_path):
            raise fail(f"volume mount {m.host_path} -> {m.container_path}: the host path must "
                       "exist and the container path must be absolute")
    layout.container_dir(sandbox.pod_dir, spec.name).mkdir(parents=True, exist_ok=True)
    _write_if_changed(sandbox.pod_dir / "resolv.conf", sandbox.resolv_conf)
    _write_if_changed(sandbox.pod_dir / "hosts", sandbox.hosts)
    _write_if_changed(sandbox.pod_dir / "hostname", sandbox.hostname + "\n")


def _remove_mountpoints(pod_dir: Path) -> None:
    try:
        made = (pod_dir / "mountpoints").read_text().splitlines()
    except FileNotFoundError:
        return
    for p in reversed(made):
        try:
            if os.path.isdir(p) and not os.path.islink(p):
                os.rmdir(p)
            elif os.path.getsize(p) == 0:
                os.unlink(p)
        except OSError:
            pass  # not empty any more, or used by another pod: leave it


def remove_pod_files(pod_dir: Path) -> None:
    """Delete what prepare_pod_dir and the shims made; pod_dir itself if then empty."""
    _remove_mountpoints(pod_dir)
    _unmount(pod_dir, "ipc")
    _unmount(pod_dir, "roots")
    for name in MADE_FILES:
        p = pod_dir / name
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    try:
        pod_dir.rmdir()
    except OSError:
        pass
