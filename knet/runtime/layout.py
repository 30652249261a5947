"""Where the runtime keeps a pod's files (the agent's view; see records.py for the format).

    pod_dir/resolv.conf, pod_dir/hosts     bind-mounted over /etc/* in every container
    pod_dir/mountpoints                    mount points the runtime had to create
    pod_dir/containers/NAME/N.{spec,state,exit,log}   one container instance N (0, 1, ...)
    pod_dir/roots/NAME/N/{upper,work,merged}   instance N's root file system (rootfs.py), on
                                           the pod's tmpfs at pod_dir/roots (podfiles.py)
    pod_dir/ipc                            the pod's IPC namespace (an nsfs bind mount)
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NamedTuple


class Instance(NamedTuple):
    """The files of one container instance: `attempt` is its number (the restartCount)."""

    attempt: int
    spec: Path
    state: Path
    exit: Path
    log: Path


def container_dir(pod_dir: Path, name: str) -> Path:
    return pod_dir / "containers" / name


def instance(pod_dir: Path, name: str, attempt: int) -> Instance:
    base = container_dir(pod_dir, name)
    return Instance(attempt, *(base / f"{attempt}.{ext}"
                               for ext in ("spec", "state", "exit", "log")))


def root_dir(inst: Instance) -> Path:
    """Where an instance's root file system lives: pod_dir/roots/NAME/N."""
    return inst.log.parent.parent.parent / "roots" / inst.log.parent.name / str(inst.attempt)


def instance_of_log(log: Path) -> Instance:
    """The instance a log file belongs to (for readers given a path)."""
    if log.suffix != ".log" or not log.stem.isdigit():
        raise ValueError(f"{log}: not a container log (want .../containers/NAME/N.log)")
    return instance(log.parent.parent.parent, log.parent.name, int(log.stem))


def attempts(pod_dir: Path, name: str) -> list[int]:
    """The instance numbers that have a spec, oldest first."""
    try:
        names = os.listdir(container_dir(pod_dir, name))
    except FileNotFoundError:
        return []
    return sorted(int(n[:-5]) for n in names if n.endswith(".spec") and n[:-5].isdigit())


def container_names(pod_dir: Path) -> list[str]:
    try:
        return sorted(os.listdir(pod_dir / "containers"))
    except FileNotFoundError:
        return []


def prune(pod_dir: Path, name: str, *, keep_from: int) -> None:
    """Delete the files of instances older than `keep_from` (Kubernetes keeps one dead one)."""
    for n in attempts(pod_dir, name):
        if n < keep_from:
            inst = instance(pod_dir, name, n)
            for p in (*inst[1:], inst.log.with_name(inst.log.name + ".1")):
                p.unlink(missing_ok=True)
            shutil.rmtree(root_dir(inst), ignore_errors=True)
