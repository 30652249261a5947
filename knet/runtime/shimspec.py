"""What one container instance's shim is told: the spec ProcessRuntime writes (marshal) for
the fork server's shim (shim.py) — the command and its environment, files, log and exit
record paths, and, with namespaces, its isolation: PID namespace, root file system plan
(rootfs.py), cgroups with its limits (cgroups.py) and capability bounding set (caps.py).
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import knet
from knet.runtime import caps, cgroups, layout, rootfs
from knet.runtime.base import DEFAULT_PATH, ContainerSpec, ContainerStartError, PodSandbox

__all__ = ["PAUSE", "ShimSpecs"]

PAUSE = ".pause"  # the holder of a shared PID namespace: not a valid container name


def _cap_last() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return len(caps.NAMES) - 1


class ShimSpecs:
    """Builds shim specs for one runtime (its settings fixed at construction)."""

    def __init__(self, *, namespaces: bool, log_max_bytes: int, hidden: Sequence[str],
                 cgroups: cgroups.Cgroups, python: str) -> None:
        self._namespaces, self._log_max_bytes = namespaces, log_max_bytes
        self._hidden, self._cgroups = list(hidden), cgroups
        # what built-in images and `command: python3` need even when it lives under /root
        self._needed = sorted({str(Path(knet.__file__).resolve().parents[1]), sys.prefix,
                               sys.base_prefix, os.path.dirname(os.path.realpath(python))})
        self._cap_last = _cap_last()

    def build(self, sandbox: PodSandbox, spec: ContainerSpec, inst: layout.Instance, *,
              pidns: str) -> dict[str, object]:
        out = self._base(sandbox, spec, inst)
        out.update(self._isolation(sandbox, spec, inst, pidns=pidns))
        return out

    def _base(self, sandbox: PodSandbox, spec: ContainerSpec,
              inst: layout.Instance) -> dict[str, object]:
        env = {"PATH": DEFAULT_PATH, "HOSTNAME": sandbox.hostname, "HOME": "/root", **spec.env}
        return {"key": sandbox.key, "name": spec.name, "namespaces": self._namespaces,
                "netns": sandbox.netns,
                "hostname": sandbox.hostname, "resolv": str(sandbox.pod_dir / "resolv.conf"),
                "hosts": str(sandbox.pod_dir / "hosts"),
                "hostname_file": str(sandbox.pod_dir / "hostname"), "argv": list(spec.argv),
                "env": env, "uid": -1 if spec.run_as_user is None else spec.run_as_user,
                "gid": -1 if spec.run_as_group is None else spec.run_as_group,
                "workdir": spec.workdir or "",
                "mounts": [(m.host_path, m.container_path, m.read_only) for m in spec.mounts],
                "state": str(inst.state), "exit": str(inst.exit), "log": str(inst.log),
                "log_max_bytes": self._log_max_bytes, "stdin": spec.stdin,
                "stdin_once": spec.stdin_once, "tty": spec.tty}

    def _isolation(self, sandbox: PodSandbox, spec: ContainerSpec, inst: layout.Instance, *,
                   pidns: str) -> dict[str, object]:
        """The shim spec's namespaces, root file system, cgroups and capabilities."""
        if not self._namespaces:
            return {}

        def fail(msg: str) -> ContainerStartError:
            return ContainerStartError(f"pod {sandbox.key}: container {spec.name!r}: {msg}",
                                       reason="CreateContainerError")

        try:
            keep = None if spec.privileged else caps.bounding_set(add=spec.cap_add,
                                                                  drop=spec.cap_drop)
        except caps.UnknownCapability as exc:
            raise fail(str(exc)) from None
        root = rootfs.instance_root(inst.log)
        plan = rootfs.plan(sandbox, spec, root=root, needed=self._needed,
                           hidden=rootfs.hidden_paths(sandbox, self._hidden))
        dirs: list[str] = []
        if spec.name != PAUSE:
            leaf = hashlib.sha1(str(sandbox.pod_dir).encode()).hexdigest()[:12]
            try:
                dirs = self._cgroups.create(f"{leaf}-{spec.name}-{inst.attempt}",
                                            memory=spec.memory_limit,
                                            cpu_millis=spec.cpu_limit_millis)
            except OSError as exc:
                raise fail(f"cannot set up its cgroups: {exc}") from None
        return {"pid_ns": True, "pidns": pidns, "pid_init": not pidns and spec.name != PAUSE,
                "ipcns": str(sandbox.pod_dir / "ipc"), "plan": plan, "rootfs": str(root),
                "cgroups": dirs, "caps": keep, "cap_last": self._cap_last}
