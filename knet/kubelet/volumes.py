"""Volumes that are not files the kubelet writes from API objects: a claim's PersistentVolume
directory, hostPath, emptyDir `medium: Memory` (a tmpfs, sized by sizeLimit) and downwardAPI.

`host_dir` answers the host directory the container bind-mounts (containers.mounts_for does
the mount, subPath included), or None for the kinds containers.py writes itself (configMap,
secret, projected, a disk emptyDir). A claim that is not Bound yet raises `VolumeNotReady`;
the pod worker retries it (upstream's "unbound immediate PersistentVolumeClaims" wait). PV
directories live outside the pod directory, so they survive the pod: a re-created pod on the
same node finds its data. `unmount_pod_volumes` undoes the tmpfs mounts at teardown.

A hostPath is a path of this machine (knet's nodes share its file system), so the paths no
container sees (knet's state dir with the cluster's keys and tokens, /root, /home:
`runtime.rootfs.HIDDEN`) are off limits to it too: a hostPath inside one fails to mount
(FailedMount, naming the way out), except the node's local-path volume directory. A hostPath
above one (`/`, as `kubectl debug node/NAME` asks) is mounted with those paths emptied (the
runtime's plan masks them).
"""

from __future__ import annotations

import ctypes
import math
import os
import stat
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from knet.errors import KnetError
from knet.runtime.rootfs import DEFAULT_STATE_DIR, HIDDEN

__all__ = ["VolumeNotReady", "downward_files", "host_dir", "prepare_sub_path",
           "unmount_pod_volumes"]

Obj = dict[str, Any]
Lookup = Callable[[str, str, str], Awaitable[Obj | None]]


class VolumeNotReady(KnetError):
    """The volume cannot be set up yet (claim unbound, volume missing): retried."""


def _pod_ref(pod: Obj) -> str:
    return f"pod {pod['metadata']['namespace']}/{pod['metadata']['name']}"


def _state_dir(pod_dir: Path) -> Path | None:
    """The state dir holding this pod's directory (the parent of its `pods/` directory)."""
    for parent in pod_dir.resolve().parents:
        if parent.name == "pods":
            return parent.parent
    return None


def _check_not_hidden(pod: Obj, name: str, path: Path, pod_dir: Path) -> None:
    real = Path(os.path.realpath(path))
    state = _state_dir(pod_dir)
    allowed = [state / "volumes"] if state else []
    hidden = [Path(p) for p in HIDDEN] + ([state] if state else [])
    for h in hidden:
        if (real == h or h in real.parents) and not any(
                real == a or a in real.parents for a in allowed):
            what = ("knet's state directory, which holds the cluster's keys and tokens"
                    if h == state or str(h) == DEFAULT_STATE_DIR else "a host directory "
                    "knet keeps from every container")
            raise VolumeNotReady(
                f"{_pod_ref(pod)}: volume {name!r}: hostPath {str(path)!r} is inside {h}, "
                f"{what}; no pod may mount it. Use a path outside it, or a "
                "PersistentVolumeClaim of the `standard` (local-path) StorageClass")


async def host_dir(pod: Obj, vol: Obj, pod_dir: Path, *, lookup: Lookup) -> Path | None:
    if "persistentVolumeClaim" in vol:
        path = await _claim_dir(pod, vol, lookup=lookup)
        _check_not_hidden(pod, str(vol["name"]), path, pod_dir)
        return path
    if "hostPath" in vol:
        src = vol["hostPath"] or {}
        if Path(str(src.get("path") or "")).is_absolute():   # before DirectoryOrCreate makes it
            _check_not_hidden(pod, str(vol["name"]), Path(src["path"]), pod_dir)
        return _host_path(pod, str(vol["name"]), src)
    if (vol.get("emptyDir") or {}).get("medium") == "Memory":
        return _tmpfs(pod, pod_dir / "volumes" / vol["name"], vol["emptyDir"].get("sizeLimit"))
    if "downwardAPI" in vol:
        path = pod_dir / "volumes" / str(vol["name"])
        path.mkdir(parents=True, exist_ok=True)
        mode = int((vol["downwardAPI"] or {}).get("defaultMode", 0o644))
        for rel, text in downward_files(pod, (vol["downwardAPI"] or {}).get("items")).items():
            target = path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            os.chmod(target, mode)
        return path
    return None


async def _claim_dir(pod: Obj, vol: Obj, *, lookup: Lookup) -> Path:
    ns = pod["metadata"]["namespace"]
    name = (vol["persistentVolumeClaim"] or {}).get("claimName", "")
    pvc = await lookup("persistentvolumeclaims", ns, name)
    if pvc is None:
        raise VolumeNotReady(f"{_pod_ref(pod)}: volume {vol['name']!r}: "
                             f'persistentvolumeclaim "{name}" not found')
    volume = (pvc.get("spec") or {}).get("volumeName")
    if not volume or (pvc.get("status") or {}).get("phase") != "Bound":
        raise VolumeNotReady(f"{_pod_ref(pod)}: volume {vol['name']!r}: persistentvolumeclaim "
                             f'"{name}" is not bound yet; waiting for its PersistentVolume')
    pv = await lookup("persistentvolumes", "", volume)
    if pv is None:
        raise VolumeNotReady(f"{_pod_ref(pod)}: volume {vol['name']!r}: persistentvolume "
                             f'"{volume}" not found')
    spec = pv.get("spec") or {}
    if spec.get("hostPath"):
        return _host_path(pod, vol["name"], spec["hostPath"])
    if spec.get("local"):
        return _host_path(pod, vol["name"], {"path": spec["local"].get("path"),
                                             "type": "Directory"})
    raise KnetError(f"{_pod_ref(pod)}: volume {vol['name']!r}: persistentvolume {volume} has "
                    "no hostPath or local source; knet mounts only node-local volumes")


_CHECKS = {"Directory": stat.S_ISDIR, "File": stat.S_ISREG, "Socket": stat.S_ISSOCK,
           "CharDevice": stat.S_ISCHR, "BlockDevice": stat.S_ISBLK}
_NAMES = {"Directory": "directory", "File": "file", "Socket": "socket",
          "CharDevice": "character device", "BlockDevice": "block device"}


def _host_path(pod: Obj, name: str, src: Obj) -> Path:
    """hostPath with upstream's type checks (DirectoryOrCreate/FileOrCreate make it)."""
    path = Path(str(src.get("path") or ""))
    kind = src.get("type") or ""
    if not path.is_absolute():
        raise KnetError(f"{_pod_ref(pod)}: volume {name!r}: hostPath {str(path)!r} must be "
                        "an absolute path")
    if kind == "DirectoryOrCreate":
        path.mkdir(mode=0o755, parents=True, exist_ok=True)
    elif kind == "FileOrCreate":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o644, exist_ok=True)
    elif kind in _CHECKS:
        try:
            ok = _CHECKS[kind](os.stat(path).st_mode)
        except FileNotFoundError:
            ok = False
        if not ok:
            raise VolumeNotReady(f"{_pod_ref(pod)}: volume {name!r}: hostPath type check "
                                 f"failed: {path} is not a {_NAMES[kind]}")
    return path


def _size_bytes(limit: Any) -> int | None:
    if limit in (None, ""):
        return None
    from control.scheduler import parse_quantity
    try:
        return max(4096, int(parse_quantity(limit)))
    except ValueError:
        return None


def _is_mount(path: Path) -> bool:
    try:
        return os.stat(path).st_dev != os.stat(path.parent).st_dev
    except FileNotFoundError:
        return False


def _tmpfs(pod: Obj, path: Path, size_limit: Any) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    if _is_mount(path):
        return path
    opts = "mode=0777"
    size = _size_bytes(size_limit)
    if size is not None:
        opts += f",size={size}"
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise KnetError(f"{_pod_ref(pod)}: emptyDir {path.name!r} (medium Memory): cannot "
                        f"mount a tmpfs: {proc.stderr.strip()}; the agent must run as root")
    return path


def unmount_pod_volumes(pod_dir: Path) -> None:
    """Unmount the tmpfs volumes under pod_dir/volumes (before the directory is removed)."""
    try:
        names = os.listdir(pod_dir / "volumes")
    except FileNotFoundError:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for name in names:
        path = pod_dir / "volumes" / name
        if _is_mount(path) and libc.umount2(str(path).encode(), 2) != 0:  # MNT_DETACH
            raise OSError(ctypes.get_errno(), f"umount {path}")


def prepare_sub_path(base: Path, sub_path: str) -> Path:
    """base/subPath, made as a directory if missing (kubelet does); never outside base."""
    target = (base / sub_path).resolve()
    root = base.resolve()
    if target != root and root not in target.parents:
        raise KnetError(f"subPath {sub_path!r} leaves its volume ({base}); use a relative path "
                        "without '..'")
    if not target.exists():
        target.mkdir(parents=True, exist_ok=True)
    return target


def _map_text(value: Any) -> str:
    return "\n".join(f'{k}="{v}"' for k, v in sorted((value or {}).items()))


def _resource_value(container: Obj, ref: Obj) -> str:
    """limits.memory / requests.cpu ... divided by the divisor, rounded up (as upstream)."""
    from control.scheduler import parse_quantity
    which, _, name = str(ref.get("resource", "")).partition(".")
    value = ((container.get("resources") or {}).get(which) or {}).get(name)
    if value is None:
        return "0"
    try:
        divisor = parse_quantity(ref.get("divisor") or 1) or 1.0
        return str(math.ceil(parse_quantity(value) / divisor))
    except ValueError:
        return "0"


def downward_files(pod: Obj, items: Any) -> dict[str, str]:
    """path -> content for downwardAPI items (fieldRef; resourceFieldRef gives limits)."""
    md, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    fields = {"metadata.name": md.get("name", ""), "metadata.namespace": md.get("namespace", ""),
              "metadata.uid": md.get("uid", ""), "metadata.labels": _map_text(md.get("labels")),
              "metadata.annotations": _map_text(md.get("annotations")),
              "spec.nodeName": spec.get("nodeName", ""),
              "spec.serviceAccountName": spec.get("serviceAccountName", ""),
              "status.podIP": status.get("podIP", ""), "status.hostIP": status.get("hostIP", "")}
    out: dict[str, str] = {}
    for item in items or []:
        ref = (item.get("fieldRef") or {}).get("fieldPath", "")
        if ref.startswith(("metadata.labels['", "metadata.annotations['")):
            which, key = ref.split("[", 1)
            out[item["path"]] = str((md.get(which.split(".")[1]) or {}).get(key[1:-2], ""))
        elif ref:
            out[item["path"]] = str(fields.get(ref, ""))
        elif item.get("resourceFieldRef"):
            res = item["resourceFieldRef"]
            container: Obj = next((c for c in spec.get("containers") or []
                              if c.get("name") == res.get("containerName")), {})
            out[item["path"]] = _resource_value(container, res)
    return out
