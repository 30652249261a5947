"""The files a pod's containers need on the host side, made before a start, removed after.

resolv.conf, hosts and hostname are written in place (same inode) so that running containers, which
bind-mount them, see an update. Containers share the host's root file system, so a volume's
mount point that does not exist has to be created on it: each one created is recorded in
`pod_dir/mountpoints` and removed with the pod (only if still empty; a path another pod
also uses is the known limit of sharing one root).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from knet.runtime import layout
from knet.runtime.base import ContainerSpec, ContainerStartError, PodSandbox

MADE_FILES = ("resolv.conf", "hosts", "hostname", "mountpoints", "containers")


def _write_if_changed(path: Path, text: str) -> None:
    try:
        if path.read_text() == text:
            return
    except FileNotFoundError:
        pass
    with open(path, "w") as f:  # in place: bind mounts of the old inode stay valid
        f.write(text)


def _ensure_mountpoint(pod_dir: Path, host_path: str, target: str) -> None:
    if os.path.lexists(target):
        return
    made: list[str] = []
    parent = os.path.dirname(target)
    while parent and not os.path.exists(parent):
        made.append(parent)
        parent = os.path.dirname(parent)
    for d in reversed(made):
        os.mkdir(d)
    if os.path.isdir(host_path):
        os.mkdir(target)
    else:
        open(target, "x").close()
    with open(pod_dir / "mountpoints", "a") as f:
        f.writelines(p + "\n" for p in [*reversed(made), target])


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
    for m in spec.mounts:
        _ensure_mountpoint(sandbox.pod_dir, m.host_path, os.path.normpath(m.container_path))


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
